#!/usr/bin/env bash
# Webhook-received-to-delivered latency at a light load, and idle RSS (issue 2, "Benchmark").
#
# Same stack as bench/ingest.sh. Reads amrelay's VmRSS after startup, before any load
# (idle RSS), then sends RATE distinct notifications/s for DURATION seconds. The sink fake
# times each delivery as (arrival at the fake) - (bench_sent_ms, stamped by the load
# generator when it built the request), so the figure is "webhook sent to amrelay" ->
# "amrelay's request reaches the fake": ingest, durable commit, worker wake-up, claim,
# encoding and the HTTP request, plus loopback transit (well under 1 ms here).
#
#   bench/latency.sh                     # 50/s for 30 s
#
# Environment: RATE (50), DURATION (30, seconds), ALERTS (5), IDLE_SETTLE (2, seconds
# after readiness before reading idle RSS), plus SKIP_BUILD, KEEP, AMRELAY_LOG_LEVEL, PIN.

source "$(dirname "$0")/common.sh"

RATE="${RATE:-50}"
DURATION="${DURATION:-30}"
ALERTS="${ALERTS:-5}"
IDLE_SETTLE="${IDLE_SETTLE:-2}"

build
start_stack

sleep "$IDLE_SETTLE"
idle_rss_kib="$(proc_kib "$AM_PID" VmRSS)"
idle_hwm_kib="$(proc_kib "$AM_PID" VmHWM)"

log "loadgen: ${RATE}/s for ${DURATION}s"
"${PIN_AUX[@]}" "$BIN/examples/loadgen" --url "$WEBHOOK_URL" --rate "$RATE" --duration "$DURATION" \
    --alerts "$ALERTS" >"$BENCH_TMP/loadgen.json"
ok="$(python3 -c "import json; print(json.load(open('$BENCH_TMP/loadgen.json'))['ok'])")"

# Wait (bounded, 10 s) until the fake has every acked notification.
n=0
while ((n < 100)); do
    got="$(curl -fsS --max-time 5 "$STATS_URL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["timed"])')"
    ((got >= ok)) && break
    sleep 0.1
    n=$((n + 1))
done

curl -fsS --max-time 5 "$STATS_URL" >"$BENCH_TMP/sink.json"
lat_sum="$(metric_sum amrelay_delivery_latency_seconds_sum %.6f)"
lat_count="$(metric_sum amrelay_delivery_latency_seconds_count)"
loaded_rss_kib="$(proc_kib "$AM_PID" VmRSS)"

cat "$BENCH_TMP/loadgen.json"
cat "$BENCH_TMP/sink.json"
echo
rev="$(bench_rev)"
python3 - <<EOF
import json, time
lg = json.load(open("$BENCH_TMP/loadgen.json"))
sink = json.load(open("$BENCH_TMP/sink.json"))
count = float("$lat_count") if "$lat_count" != "NaN" else 0
out = {
    "bench": "latency",
    "revision": "$rev",
    "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "rate": $RATE, "duration_s": $DURATION, "alerts": $ALERTS,
    "sent": lg["sent"], "ok": lg["ok"], "non_2xx": lg["non_2xx"], "errors": lg["errors"],
    "ack_p50_ms": lg["p50_ms"], "ack_p99_ms": lg["p99_ms"],
    "delivered_timed": sink["timed"], "sink_repeats": sink["repeats"],
    "received_to_fake_p50_ms": sink["p50_ms"],
    "received_to_fake_p90_ms": sink["p90_ms"],
    "received_to_fake_p99_ms": sink["p99_ms"],
    "received_to_fake_max_ms": sink["max_ms"],
    "amrelay_histogram_mean_ms": round(float("$lat_sum") / count * 1000, 3) if count else None,
    "idle_rss_mib": round($idle_rss_kib / 1024, 1),
    "idle_peak_rss_mib": round($idle_hwm_kib / 1024, 1),
    "rss_mib_after_load": round($loaded_rss_kib / 1024, 1),
}
print(json.dumps(out))
print(f"webhook received -> fake request: p50 {out['received_to_fake_p50_ms']} ms, "
      f"p99 {out['received_to_fake_p99_ms']} ms, max {out['received_to_fake_max_ms']} ms "
      f"({out['delivered_timed']} deliveries)")
print(f"idle RSS (VmRSS after startup, before load): {out['idle_rss_mib']} MiB")
EOF
