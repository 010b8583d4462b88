"""Helper of bench/email.sh: a SendGrid-shaped API fake, the burst, and the figures.

    email_burst.py fake --port P         serve POST /v3/mail/send (202) and GET /stats
    email_burst.py burst --webhook URL --token T --n N --fake URL --maildir DIR --out FILE

The burst posts N distinct notifications at once (one thread each), each with the group
label bench_n="<i>", which the default subject template puts in the subject, and records
when each was sent. It then waits (bounded by --wait seconds) until the API fake and the
relay's Maildir hold N emails, and prints per path the latency from "webhook sent" to
"email accepted" (the fake's arrival time; the relay's X-Relay-Accepted-At stamp).
"""

import argparse
import json
import mailbox
import os
import re
import sys
import threading
import time
import urllib.request
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUBJECT_N = re.compile(r"bench-(\d+)")


def fake(port):
    arrivals = {}
    lock = threading.Lock()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            t = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v3/mail/send" or not self.headers.get("Authorization", "").startswith("Bearer "):
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            subject = json.loads(body).get("subject", "")
            m = SUBJECT_N.search(subject)
            if m:
                with lock:
                    arrivals.setdefault(m.group(1), t)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            with lock:
                data = json.dumps(arrivals).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        # The default backlog of 5 drops connections in a burst: the client's SYN is
        # retried after 1 s, and that second would be charged to amrelay.
        request_queue_size = 256
        daemon_threads = True

    H.protocol_version = "HTTP/1.1"
    Server(("127.0.0.1", port), H).serve_forever()


def notification(i):
    labels = {"alertname": "BenchEmail", "bench_n": f"bench-{i}", "severity": "critical"}
    return json.dumps({
        "receiver": "bench", "status": "firing", "version": "4",
        "groupKey": f"{{}}:{{bench_n=\"bench-{i}\"}}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "BenchEmail", "bench_n": f"bench-{i}"},
        "commonLabels": labels, "commonAnnotations": {"summary": "bench"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing", "labels": labels, "annotations": {"summary": "bench"},
            "startsAt": "2026-11-26T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": f"{i:016x}",
        }],
    }).encode()


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return round(v[k] * 1000, 1)


def burst(a):
    sent = {}
    status = {}

    def post(i):
        req = urllib.request.Request(a.webhook, data=notification(i), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {a.token}"})
        sent[str(i)] = time.time()
        with urllib.request.urlopen(req, timeout=30) as r:
            status[str(i)] = r.status

    threads = [threading.Thread(target=post, args=(i,)) for i in range(a.n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked = sum(1 for s in status.values() if s == 200)

    deadline = time.time() + a.wait
    api, smtp = {}, {}
    while time.time() < deadline:
        api = json.load(urllib.request.urlopen(a.fake, timeout=5))
        smtp = {}
        if a.maildir:
            for _, msg in mailbox.Maildir(a.maildir, create=False).iteritems():
                subject = str(make_header(decode_header(msg.get("Subject", ""))))
                m = SUBJECT_N.search(subject)
                if m:
                    smtp.setdefault(m.group(1), float(msg["X-Relay-Accepted-At"]))
        if len(api) >= a.n and (not a.maildir or len(smtp) >= a.n):
            break
        time.sleep(0.2)

    def lat(arrivals):
        return [arrivals[k] - sent[k] for k in arrivals if k in sent]

    out = {"n": a.n, "acked": acked}
    for name, arr in (("api", api), ("smtp", smtp)):
        if name == "smtp" and not a.maildir:
            continue
        l = lat(arr)
        out[name] = {"accepted": len(arr), "p50_ms": pct(l, 50), "p99_ms": pct(l, 99),
                     "max_ms": round(max(l) * 1000, 1) if l else None}
    json.dump(out, open(a.out, "w"))
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fake")
    f.add_argument("--port", type=int, required=True)
    b = sub.add_parser("burst")
    b.add_argument("--webhook", required=True)
    b.add_argument("--token", required=True)
    b.add_argument("--n", type=int, default=50)
    b.add_argument("--fake", required=True)
    b.add_argument("--maildir")
    b.add_argument("--wait", type=float, default=300)
    b.add_argument("--out", required=True)
    a = p.parse_args()
    if a.cmd == "fake":
        fake(a.port)
    else:
        burst(a)


if __name__ == "__main__":
    sys.exit(main())
