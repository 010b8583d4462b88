#!/usr/bin/env bash
# Sustained webhook ingest with durable acks (issue 2, "Benchmark").
#
# Open loop, RATE requests/s for DURATION seconds, each a distinct notification (unique
# groupKey) of ALERTS alerts, routed to one webhook channel with no rate limit (the sink
# fake answers 200 at once). Reports the load generator's JSON (ack latency from the
# scheduled send time), amrelay's peak RSS (VmHWM), and the queue depth ~3 s after the
# load (the gauge refreshes every 2 s).
#
# Targets: p99 ack <= 25 ms, peak RSS <= 64 MiB, no request refused.
#
#   bench/ingest.sh                      # 5000/s for 60 s
#   RATE=1000 DURATION=10 bench/ingest.sh
#
# Environment: RATE (5000), DURATION (60, seconds), ALERTS (5), LOADGEN_THREADS (1),
# CONCURRENCY (the bench channel's concurrency; default: the webhook default, 32),
# RATE_LIMIT (the bench channel's rate_limit, e.g. "1/s" to measure ingest alone),
# DRAIN_WAIT (120, seconds to wait for the sink to get every delivery afterwards),
# plus SKIP_BUILD, KEEP, AMRELAY_LOG_LEVEL, PIN (see bench/common.sh).

source "$(dirname "$0")/common.sh"

RATE="${RATE:-5000}"
DURATION="${DURATION:-60}"
ALERTS="${ALERTS:-5}"
LOADGEN_THREADS="${LOADGEN_THREADS:-1}"
DRAIN_WAIT="${DRAIN_WAIT:-120}"

build
start_stack

sink_stat() {
    curl -fsS --max-time 5 "$STATS_URL" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# A coarse time series while the load runs: every 5 s, RSS, queue depth, sink arrivals.
sampler() {
    local t=0
    echo "t_s rss_kib queue_depth sink_requests" >"$BENCH_TMP/samples.txt"
    while ((t <= DURATION + 30)) && kill -0 "$AM_PID" 2>/dev/null; do
        echo "$t $(proc_kib "$AM_PID" VmRSS) $(metric_sum amrelay_queue_depth 2>/dev/null || echo NaN) $(sink_stat requests 2>/dev/null || echo NaN)" \
            >>"$BENCH_TMP/samples.txt"
        sleep 5
        t=$((t + 5))
    done
}

idle_rss_kib="$(proc_kib "$AM_PID" VmRSS)"
cpu_before="$(cpu_seconds "$AM_PID")"
sink_cpu_before="$(cpu_seconds "$SINK_PID")"
sampler &
PIDS+=("$!")

log "loadgen: ${RATE}/s for ${DURATION}s, ${ALERTS} alerts per notification"
/usr/bin/time -f '%e %U %S %M' -o "$BENCH_TMP/loadgen.time" \
    "${PIN_AUX[@]}" "$BIN/examples/loadgen" --url "$WEBHOOK_URL" --rate "$RATE" --duration "$DURATION" \
    --alerts "$ALERTS" --threads "$LOADGEN_THREADS" >"$BENCH_TMP/loadgen.json"
cpu_after_load="$(cpu_seconds "$AM_PID")"
sink_cpu_after_load="$(cpu_seconds "$SINK_PID")"
load_end_ns=$(date +%s%N)

# Poll (bounded) for the time at which the sink holds every delivery amrelay committed
# (amrelay_deliveries_enqueued_total; under overload it exceeds the loadgen's "ok": requests
# committed after the client gave up); read the queue gauge once, ~3 s after the load (it
# refreshes every 2 s).
queue_depth=""
drained_after="null"
n=0
while ((n < DRAIN_WAIT * 10)); do
    since_ms=$((($(date +%s%N) - load_end_ns) / 1000000))
    if [[ -z "$queue_depth" ]] && ((since_ms >= 3000)); then
        queue_depth="$(metric_sum amrelay_queue_depth)"
        rss_after_kib="$(proc_kib "$AM_PID" VmRSS)"
        # Not stale like the gauge: committed minus arrived at the sink, right now.
        undelivered=$(($(metric_sum amrelay_deliveries_enqueued_total) - $(sink_stat distinct_webhook_ids)))
    fi
    enqueued="$(metric_sum amrelay_deliveries_enqueued_total)"
    if [[ "$drained_after" == null ]] && (($(sink_stat distinct_webhook_ids) >= enqueued)); then
        drained_after="$(awk -v ms="$since_ms" 'BEGIN { printf "%.1f", ms / 1000 }')"
    fi
    [[ -n "$queue_depth" && "$drained_after" != null ]] && break
    ((since_ms > DRAIN_WAIT * 1000)) && break
    sleep 0.1
    n=$((n + 1))
done
if [[ -z "$queue_depth" ]]; then
    queue_depth="$(metric_sum amrelay_queue_depth)"
    rss_after_kib="$(proc_kib "$AM_PID" VmRSS)"
    undelivered=$(($(metric_sum amrelay_deliveries_enqueued_total) - $(sink_stat distinct_webhook_ids)))
fi
# Peak over the whole run, load and drain.
peak_rss_kib="$(proc_kib "$AM_PID" VmHWM)"
enqueued="$(metric_sum amrelay_deliveries_enqueued_total)"
rejected="$(metric_sum amrelay_webhooks_rejected_total)"

cat "$BENCH_TMP/loadgen.json"
read -r lg_wall lg_user lg_sys lg_maxrss <"$BENCH_TMP/loadgen.time"
rev="$(bench_rev)"
python3 - <<EOF
import json, time
lg = json.load(open("$BENCH_TMP/loadgen.json"))
sink = json.loads('''$(curl -fsS --max-time 5 "$STATS_URL")''')
out = {
    "bench": "ingest",
    "revision": "$rev",
    "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "rate": $RATE, "duration_s": $DURATION, "alerts": $ALERTS,
    "sent": lg["sent"], "ok": lg["ok"], "non_2xx": lg["non_2xx"], "errors": lg["errors"],
    "ack_p50_ms": lg["p50_ms"], "ack_p90_ms": lg["p90_ms"], "ack_p99_ms": lg["p99_ms"],
    "ack_max_ms": lg["max_ms"],
    "peak_rss_mib": round($peak_rss_kib / 1024, 1),
    "idle_rss_mib_before_load": round($idle_rss_kib / 1024, 1),
    "rss_mib_3s_after_load": round($rss_after_kib / 1024, 1),
    "queue_depth_3s_after_load": $queue_depth,
    "undelivered_3s_after_load": $undelivered,
    "all_delivered_s_after_load": json.loads("$drained_after"),  # null: not within DRAIN_WAIT
    "amrelay_enqueued": $enqueued, "amrelay_rejected": $rejected,
    "sink_requests": sink["requests"], "sink_repeats": sink["repeats"],
    "amrelay_cpu_s_during_load": round($cpu_after_load - $cpu_before, 2),
    "sinkfake_cpu_s_during_load": round($sink_cpu_after_load - $sink_cpu_before, 2),
    "loadgen_cpu_s": round($lg_user + $lg_sys, 2),
    "loadgen_max_schedule_lag_ms": lg["max_schedule_lag_ms"],
    "loadgen_peak_inflight": lg["peak_inflight"],
    "amrelay_warn_lines": $(grep -c ' WARN ' "$BENCH_TMP/amrelay.log" || true),
    "amrelay_error_lines": $(grep -c ' ERROR ' "$BENCH_TMP/amrelay.log" || true),
}
print(json.dumps(out))
print(f"ack latency p50 {out['ack_p50_ms']} ms, p99 {out['ack_p99_ms']} ms, max {out['ack_max_ms']} ms "
      f"(target p99 <= 25 ms); {out['ok']}/{out['sent']} acked 2xx, non-2xx {out['non_2xx']}, errors {out['errors']}")
print(f"peak RSS (VmHWM): {out['peak_rss_mib']} MiB (target <= 64 MiB)")
print(f"final queue depth (amrelay_queue_depth, 3 s after load; the gauge may be 2 s old): "
      f"{out['queue_depth_3s_after_load']} (committed but not yet at the sink then: {out['undelivered_3s_after_load']})")
drained = out["all_delivered_s_after_load"]
print(f"all deliveries at the sink {drained} s after the load ended" if drained is not None
      else f"deliveries still missing at the sink {$DRAIN_WAIT} s after the load ended")
EOF
log "samples (every 5 s):"
column -t "$BENCH_TMP/samples.txt" >&2 || cat "$BENCH_TMP/samples.txt" >&2
