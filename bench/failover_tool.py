#!/usr/bin/env python3
"""Helpers for bench/failover.sh (issue 4, "Figures"); python3 standard library only.

  primary --port P
      The fake primary: GET /healthz answers 200 "ok". The script kills it.
  share --webhook URL --token T --runs-file F --caller-metrics URL --endpoint-metrics URL
        --amrelay BIN --endpoint-config FILE --runs R [--min-firing S] --out FILE
      amrelay's own share, R times: posts a firing PrimaryDown (a new groupKey, a
      `target` label, startsAt now) straight to the caller, stamped with the send time;
      waits for the command's line in F (the command writes `date +%s.%N` first);
      share = command start - max(webhook sent, startsAt + min_firing). Between runs:
      waits until the caller has the endpoint's final answer and the endpoint has
      finished the run, resets the endpoint (`amrelay promotion reset`), posts the
      resolved version of the same notification and waits until the caller has
      delivered it (amrelay_deliveries_delivered_total{channel="promote"}).
  wait-cluster --am URL --am URL [--log FILE --log FILE] [--timeout S]
      Until each Alertmanager's /api/v2/status lists 2 peers and each log says
      "gossip settled; proceeding" (before that an Alertmanager sends nothing).
  wait-probe --prometheus URL [--value 1] [--timeout S]
      Until Prometheus' latest probe_success{job="primary-probe"} is VALUE.
  wait-line --file F [--timeout S] [--poll 0.01]
      Until F has a line (the measurement's poll).
  chain-result ...    one run of the chain as JSON (kill, startsAt, command start).
  rewrite SRC DST FROM=>TO...    a deploy/ file with addresses replaced (each must occur).
  free-ports N        N distinct free 127.0.0.1 ports, bound together then released.
  summary --share FILE... --chain FILE... --rev REV
      Prints the JSON summary line and the plain-text figures.
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "tests", "fixtures", "alertmanager", "primary-down-firing.raw.json",
)


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric_sum(url, name, labels=()):
    """Sum of the samples of NAME whose label text contains every string in LABELS."""
    total, found = 0.0, False
    for line in http_get(url).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        metric = series.split("{", 1)[0]
        if metric != name:
            continue
        if all(l in series for l in labels):
            total += float(value)
            found = True
    return total if found else 0.0


def wait_until(what, pred, timeout, poll=0.01):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def percentile(xs, p):
    """Nearest rank."""
    s = sorted(xs)
    k = max(0, math.ceil(p / 100 * len(s)) - 1)
    return s[k]


# ---------------------------------------------------------------------------------------
def cmd_primary(a):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok\n" if self.path.startswith("/healthz") else b"not found\n"
            self.send_response(200 if self.path.startswith("/healthz") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def notification(run_id, i, status, starts_at, ends_at=None):
    n = json.load(open(FIXTURE))
    group_key = f'{{}}/{{alertname="PrimaryDown"}}:{{alertname="PrimaryDown", target="primary", run="{run_id}-{i}"}}'
    n["groupKey"] = group_key
    n["status"] = status
    for section in ("commonLabels", "groupLabels"):
        n[section]["target"] = "primary"
    alert = n["alerts"][0]
    alert["labels"]["target"] = "primary"
    alert["labels"]["monitor"] = "bench"
    n["commonLabels"]["monitor"] = "bench"
    alert["status"] = status
    alert["fingerprint"] = hashlib.sha256(f"{run_id}-{i}".encode()).hexdigest()[:16]
    alert["startsAt"] = iso(starts_at)
    alert["endsAt"] = iso(ends_at) if ends_at else "0001-01-01T00:00:00Z"
    return n


def post(url, token, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    sent = time.time()
    with urllib.request.urlopen(req, timeout=10) as r:
        status = r.status
        r.read()
    return sent, time.time(), status


def lines(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def cmd_share(a):
    run_id = "%x" % int(time.time() * 1000)
    delivered = lambda: metric_sum(
        a.caller_metrics, "amrelay_deliveries_delivered_total", ('channel="promote"',))
    finished = lambda: metric_sum(a.endpoint_metrics, "amrelay_promotion_runs_finished_total")
    shares, acks = [], []
    base_delivered = delivered()
    for i in range(a.runs):
        # startsAt as the payload carries it (ms); with min_firing the caller holds the
        # promotion until startsAt + min_firing, and the share counts from then.
        starts_at = math.floor(time.time() * 1000) / 1000
        body = notification(run_id, i, "firing", starts_at)
        sent, acked, status = post(a.webhook, a.token, body)
        if status != 200:
            sys.exit(f"run {i}: the caller answered {status}")
        wait_until(f"run {i}: the command's line {i + 1}", lambda: len(lines(a.runs_file)) > i,
                   a.timeout, poll=0.005)
        started = float(lines(a.runs_file)[i][0])
        shares.append((started - max(sent, starts_at + a.min_firing)) * 1000)
        acks.append((acked - sent) * 1000)
        print(f"run {i + 1}/{a.runs}: share {shares[-1]:.1f} ms (ack {acks[-1]:.1f} ms, "
              f"incident {lines(a.runs_file)[i][1]})", file=sys.stderr)
        # The next run needs a fresh incident: the caller has its final answer (the
        # firing delivery is done), the endpoint has finished the run; reset the endpoint,
        # resolve on the caller and wait until the caller has processed the resolve.
        wait_until(f"run {i}: the caller's firing delivery done",
                   lambda: delivered() >= base_delivered + 2 * i + 1, a.timeout)
        wait_until(f"run {i}: the endpoint's run finished", lambda: finished() >= i + 1, a.timeout)
        subprocess.run([a.amrelay, "promotion", "reset", "--config", a.endpoint_config,
                        "--reason", f"bench/failover.sh run {i + 1}"],
                       check=True, stdout=subprocess.DEVNULL)
        _, _, status = post(a.webhook, a.token,
                            notification(run_id, i, "resolved", starts_at, time.time()))
        if status != 200:
            sys.exit(f"run {i}: the caller answered {status} to the resolve")
        wait_until(f"run {i}: the caller's resolve delivery done",
                   lambda: delivered() >= base_delivered + 2 * i + 2, a.timeout)
    out = {
        "runs": a.runs,
        "min_firing_s": a.min_firing,
        "share_ms": [round(x, 2) for x in shares],
        "p50_ms": round(percentile(shares, 50), 2),
        "p99_ms": round(percentile(shares, 99), 2),
        "max_ms": round(max(shares), 2),
        "first_run_ms": round(shares[0], 2),
        "ack_p50_ms": round(percentile(acks, 50), 2),
        "ack_max_ms": round(max(acks), 2),
    }
    json.dump(out, open(a.out, "w"))


def cmd_wait_cluster(a):
    for am in a.am:
        def two():
            s = json.loads(http_get(f"{am}/api/v2/status"))
            return len(s["cluster"]["peers"]) == 2
        wait_until(f"{am}: 2 peers", two, a.timeout, poll=0.1)
    # An Alertmanager sends nothing until its gossip has settled (10 s after its start
    # with the default --cluster.gossip-interval): a fresh pair would hold the first
    # PrimaryDown that long, which a long-running pair never does.
    for log in a.log:
        wait_until(f"{log}: gossip settled",
                   lambda: "gossip settled; proceeding" in open(log).read(), a.timeout, poll=0.1)


def cmd_wait_probe(a):
    q = urllib.parse.quote('probe_success{job="primary-probe"}')
    url = f"{a.prometheus}/api/v1/query?query={q}"
    got = {}

    def seen():
        r = json.loads(http_get(url))["data"]["result"]
        if r and r[0]["value"][1] == a.value:
            got["t"] = r[0]["value"][0]
            return True
        return False

    wait_until(f"probe_success {a.value}", seen, a.timeout, poll=0.05)
    print(got["t"])


def cmd_wait_line(a):
    wait_until(f"a line in {a.file}", lambda: len(lines(a.file)) > 0, a.timeout, poll=a.poll)
    print(lines(a.file)[0][0])


def cmd_rewrite(a):
    """Like drill.rs's `replaced`: every FROM must occur; all occurrences are replaced."""
    text = open(a.src).read()
    for pair in a.pairs:
        old, new = pair.split("=>", 1)
        if old not in text:
            sys.exit(f"{a.src}: {old!r} not found")
        text = text.replace(old, new)
    open(a.dst, "w").write(text)


def cmd_free_ports(a):
    import socket
    socks = []
    for _ in range(a.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cmd_chain_result(a):
    """One run of the full chain: the command's line (start time, incident, reason with
    the alert's startsAt) against the time the primary was killed."""
    import datetime
    import re
    line = open(a.runs_file).readline()
    started = float(line.split()[0])
    m = re.search(r"firing since (\S+?):? ", line)
    starts_at = None
    if m:
        starts_at = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    n_runs = len(lines(a.runs_file))
    out = {"profile": a.profile, "run": a.run, "phase_s": a.phase,
           "killed": a.killed, "started": started,
           "seconds": round(started - a.killed, 3),
           "kill_to_startsAt_s": round(starts_at - a.killed, 3) if starts_at else None,
           "startsAt_to_command_s": round(started - starts_at, 3) if starts_at else None,
           "min_firing_s": a.min_firing,
           # amrelay's share within the chain: past the due time (startsAt + min_firing;
           # startsAt as the reason carries it, to the ms) until the command started.
           "after_due_ms": round((started - starts_at - a.min_firing) * 1000, 1) if starts_at else None,
           "command_runs": n_runs, "incident": line.split()[1]}
    json.dump(out, open(a.out, "w"))
    print(f"{a.profile} run {a.run}: primary killed -> command started {out['seconds']:.2f} s "
          f"(kill -> alert startsAt {out['kill_to_startsAt_s']} s, startsAt -> command "
          f"{out['startsAt_to_command_s']} s, of which {out['after_due_ms']} ms past startsAt + "
          f"min_firing; kill phase {a.phase} s after the probe success)",
          file=sys.stderr)


def cmd_summary(a):
    shares = [json.load(open(p)) for p in a.share]
    chains = {}
    for path in a.chain:
        c = json.load(open(path))
        chains.setdefault(c["profile"], []).append(c)
    out = {"bench": "failover", "revision": a.rev,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "share": shares, "chain": {}}
    for p, runs in chains.items():
        secs = [r["seconds"] for r in runs]
        out["chain"][p] = {"runs": runs, "max_s": max(secs), "min_s": min(secs),
                           "after_due_max_ms": max(r["after_due_ms"] for r in runs)}
    print(json.dumps(out))
    for share in shares:
        if share["min_firing_s"]:
            what = f"min_firing {share['min_firing_s']:g}s, startsAt + min_firing -> command started"
        else:
            what = "min_firing 0s, webhook sent -> command started"
        print(f"amrelay's share ({what}), {share['runs']} runs: "
              f"p50 {share['p50_ms']} ms, p99 {share['p99_ms']} ms, max {share['max_ms']} ms "
              f"(target <= 50 ms)")
    targets = {"default": 30, "fast": 5}
    for p, c in out["chain"].items():
        each = ", ".join(f"{r['seconds']:.2f}" for r in c["runs"])
        print(f"{p} profile (primary killed -> command started): {each} s; max {c['max_s']:.2f} s "
              f"(target <= {targets.get(p, '?')} s); amrelay past startsAt + min_firing: "
              f"{', '.join(str(r['after_due_ms']) for r in c['runs'])} ms")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("primary")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("share")
    for k in ("webhook", "token", "runs-file", "caller-metrics", "endpoint-metrics", "amrelay",
              "endpoint-config", "out"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--min-firing", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=30)
    p = sub.add_parser("wait-cluster")
    p.add_argument("--am", action="append", required=True)
    p.add_argument("--log", action="append", default=[], help="an Alertmanager's log")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("wait-probe")
    p.add_argument("--prometheus", required=True)
    p.add_argument("--value", default="1")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("wait-line")
    p.add_argument("--file", required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--poll", type=float, default=0.01)
    p = sub.add_parser("rewrite")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("pairs", nargs="*", help="FROM=>TO")
    p = sub.add_parser("free-ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("chain-result")
    p.add_argument("--runs-file", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--phase", type=float, required=True)
    p.add_argument("--killed", type=float, required=True)
    p.add_argument("--min-firing", type=float, required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("summary")
    p.add_argument("--share", action="append", default=[])
    p.add_argument("--chain", nargs="*", default=[])
    p.add_argument("--rev", default="unknown")
    a = ap.parse_args()
    {"primary": cmd_primary, "share": cmd_share, "wait-cluster": cmd_wait_cluster,
     "wait-probe": cmd_wait_probe, "wait-line": cmd_wait_line, "summary": cmd_summary, "rewrite": cmd_rewrite,
     "free-ports": cmd_free_ports, "chain-result": cmd_chain_result}[a.cmd](a)


if __name__ == "__main__":
    main()
