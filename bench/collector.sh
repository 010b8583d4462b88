#!/usr/bin/env bash
# The metric collection sidecar (issue 5, "Figures").
#
# `amrelay collect` scrapes TARGETS targets of SERIES series each every INTERVAL seconds
# and remote-writes them to a real Prometheus (`--web.enable-remote-write-receiver`).
# After WARMUP seconds the Prometheus is stopped (SIGTERM, waited for) for DOWN seconds
# and started again on the same data dir and port. Reports, over DURATION seconds:
#   - amrelay's CPU (utime+stime, as % of one core) and peak RSS (VmHWM);
#   - samples missing in Prometheus: every sample amrelay scraped, minus the samples
#     Prometheus holds for the collector's series (target 0), and the largest gap
#     between two samples of one target's `up` series (target: one interval).
#
#   bench/collector.sh                                  # 10 x 1000 every 5 s, 60 s
#   DURATION=30 DOWN=10 bench/collector.sh
#
# Environment: TARGETS (10), SERIES (1000), INTERVAL (5), DURATION (60, at least
# WARMUP + DOWN + 10), WARMUP (15), DOWN (20), PROMETHEUS (prometheus), plus SKIP_BUILD,
# KEEP, AMRELAY_LOG_LEVEL (see bench/common.sh).

source "$(dirname "$0")/common.sh"

TARGETS="${TARGETS:-10}"
SERIES="${SERIES:-1000}"
INTERVAL="${INTERVAL:-5}"
DURATION="${DURATION:-60}"
WARMUP="${WARMUP:-15}"
DOWN="${DOWN:-20}"
PROMETHEUS="${PROMETHEUS:-prometheus}"

build
command -v "$PROMETHEUS" >/dev/null || { log "no $PROMETHEUS (Debian: apt-get install prometheus)"; exit 1; }

BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/amrelay-bench.XXXXXX")"
TARGET_PORT="$(free_port)"
PROM_PORT="$(free_port)"
AM_PORT="$(free_port)"
METRICS_URL="http://127.0.0.1:$AM_PORT/metrics"
PROM_URL="http://127.0.0.1:$PROM_PORT"

# The targets: one small HTTP server; /metrics/<i> is target i, SERIES series in 100
# families, values changing on every scrape.
cat >"$BENCH_TMP/targets.py" <<'EOF'
import http.server, sys, itertools
series, port = int(sys.argv[1]), int(sys.argv[2])
counter = itertools.count()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        n = next(counter)
        target = self.path.rsplit("/", 1)[-1]
        lines = []
        for f in range(100):
            lines.append(f"# HELP bench_family_{f}_total A benchmark counter.\n# TYPE bench_family_{f}_total counter\n")
            for i in range(f, series, 100):
                lines.append(f'bench_family_{f}_total{{target="{target}",series="{i}",kind="k{i % 7}"}} {n * 1000 + i}\n')
        body = "".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
python3 "$BENCH_TMP/targets.py" "$SERIES" "$TARGET_PORT" 2>"$BENCH_TMP/targets.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$TARGET_PORT/metrics/0" 100

printf 'global:\n  scrape_interval: 15s\n' >"$BENCH_TMP/prometheus.yml"
start_prometheus() {
    "$PROMETHEUS" --config.file="$BENCH_TMP/prometheus.yml" --storage.tsdb.path="$BENCH_TMP/tsdb" \
        --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-remote-write-receiver \
        >>"$BENCH_TMP/prometheus.log" 2>&1 &
    PROM_PID=$!
    PIDS+=("$PROM_PID")
    wait_http "$PROM_URL/-/ready" 300
}
start_prometheus

{
    cat <<EOF
# Written by bench/collector.sh.
[server]
listen = "127.0.0.1:$AM_PORT"
[storage]
path = "$BENCH_TMP/data"
[log]
level = "$AMRELAY_LOG_LEVEL"
[collector]
labels = { collector = "backup" }
[[collector.remote_write]]
name = "prom"
url = "$PROM_URL/api/v1/write"
EOF
    for ((i = 0; i < TARGETS; i++)); do
        printf '[[collector.targets]]\njob = "bench-%d"\nurl = "http://127.0.0.1:%d/metrics/%d"\ninterval = "%ss"\n' \
            "$i" "$TARGET_PORT" "$i" "$INTERVAL"
    done
} >"$BENCH_TMP/amrelay.toml"

"$BIN/amrelay" collect --config "$BENCH_TMP/amrelay.toml" >"$BENCH_TMP/amrelay.log" 2>&1 &
AM_PID=$!
PIDS+=("$AM_PID")
wait_http "http://127.0.0.1:$AM_PORT/healthz" 100
log "amrelay collect pid $AM_PID, prometheus :$PROM_PORT, targets :$TARGET_PORT, dir $BENCH_TMP"

started_s=$(date +%s)
cpu_before="$(cpu_seconds "$AM_PID")"
sleep "$WARMUP"
log "stopping prometheus (pid $PROM_PID) for ${DOWN}s"
kill -TERM "$PROM_PID"
while kill -0 "$PROM_PID" 2>/dev/null; do sleep 0.1; done
down_at=$(date +%s.%N)
sleep "$DOWN"
start_prometheus
up_at=$(date +%s.%N)
log "prometheus back $(awk -v a="$down_at" -v b="$up_at" 'BEGIN { printf "%.1f", b - a }') s after it stopped"
sleep $((DURATION - WARMUP - DOWN))
cpu_after="$(cpu_seconds "$AM_PID")"
elapsed=$(($(date +%s) - started_s))
peak_rss_kib="$(proc_kib "$AM_PID" VmHWM)"

# Wait (bounded) for the buffer to drain, read the counts, and stop amrelay at once so
# that no later scrape reaches Prometheus uncounted (a drained buffer means a round of
# scrapes has just been sent; the next is most of an interval away).
n=0
until [[ "$(metric_sum amrelay_collector_buffered_samples)" == 0 ]] || ((n > 600)); do
    sleep 0.1
    n=$((n + 1))
done
metrics="$(curl -fsS --max-time 5 "$METRICS_URL")"
kill -TERM "$AM_PID"
while kill -0 "$AM_PID" 2>/dev/null; do sleep 0.1; done
sum_of() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }' <<<"$metrics"; }
scraped="$(sum_of amrelay_collector_samples_scraped_total)"
sent="$(sum_of amrelay_collector_samples_sent_total)"
dropped="$(sum_of amrelay_collector_samples_dropped_total)"
buffered="$(sum_of amrelay_collector_buffered_samples)"
retried="$(awk '/^amrelay_collector_sends_total\{.*outcome="retryable"/ { s += $NF } END { print s + 0 }' <<<"$metrics")"

window=$(($(date +%s) - started_s + 30))
# count_over_time drops the metric name, so count name by name.
held="$(python3 - "$PROM_URL" "$window" <<'EOF'
import json, sys, urllib.parse, urllib.request
base, window = sys.argv[1], sys.argv[2]
def get(path, **params):
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=60) as r:
        return json.load(r)["data"]
total = 0
for name in get("/api/v1/label/__name__/values", **{"match[]": '{collector="backup"}'}):
    r = get("/api/v1/query", query=f'sum(count_over_time({name}{{collector="backup"}}[{window}s]))')
    total += int(float(r["result"][0]["value"][1])) if r["result"] else 0
print(total)
EOF
)"
max_gap="$(curl -fsS --max-time 30 "$PROM_URL/api/v1/query" \
    --data-urlencode "query=up{collector=\"backup\",job=\"bench-0\"}[${window}s]" |
    python3 -c 'import json,sys
v=json.load(sys.stdin)["data"]["result"][0]["values"]
print(round(max(b[0]-a[0] for a,b in zip(v,v[1:])), 3))')"

rev="$(bench_rev)"
python3 - <<EOF
import json, time
out = {
    "bench": "collector",
    "revision": "$rev",
    "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "targets": $TARGETS, "series_per_target": $SERIES, "interval_s": $INTERVAL,
    "duration_s": $elapsed, "prometheus_down_s": $DOWN,
    "amrelay_cpu_pct_of_one_core": round(100 * ($cpu_after - $cpu_before) / $elapsed, 2),
    "amrelay_peak_rss_mib": round($peak_rss_kib / 1024, 1),
    "samples_scraped": $scraped, "samples_sent": $sent, "samples_dropped": $dropped,
    "samples_buffered_at_end": $buffered, "sends_retried": $retried,
    "samples_in_prometheus": $held,
    "samples_missing": $scraped - $held,
    "max_gap_s_in_up_of_bench_0": $max_gap,
}
print(json.dumps(out))
print(f"amrelay CPU {out['amrelay_cpu_pct_of_one_core']}% of one core over {out['duration_s']} s, peak RSS {out['amrelay_peak_rss_mib']} MiB")
print(f"samples missing across a {out['prometheus_down_s']} s Prometheus outage: {out['samples_missing']} "
      f"(scraped {out['samples_scraped']}, in Prometheus {out['samples_in_prometheus']}, "
      f"{out['sends_retried']} sends retried); largest gap in up{{job=\"bench-0\"}}: {out['max_gap_s_in_up_of_bench_0']} s")
EOF
