#!/usr/bin/env bash
# Ingest plus delivery on SQLite and on PostgreSQL, side by side (issue 13, "Benchmarks").
#
# For each setup in SETUPS, on a fresh store each time:
#   sqlite  one instance on SQLite
#   pg1     one instance on a throwaway PostgreSQL (scripts/pg-throwaway)
#   pg2     two instances on one throwaway PostgreSQL, the load split round-robin across
#           both (loadgen with two --url); one of them delivers the channel (its owner)
# sends RATE distinct notifications/s for DURATION s, open loop, to one webhook channel (the
# sink fake, no rate limit), waits until the fake has every committed delivery, and reports
# acked, refused, ack p50/p99, undelivered at the end of the load and how long they took
# to drain, and the CPU of amrelay (all instances) and of PostgreSQL (postmaster and
# children), in total and per notification.
#
#   bench/ha.sh                                   # 2000/s for 60 s, sqlite pg1 pg2
#   RATE=1000 DURATION=10 SETUPS="pg1 pg2" bench/ha.sh
#   SEARCH=1 DURATION=30 bench/ha.sh              # highest rate of RATES that passes
#   PIN=1 bench/ha.sh                             # amrelay on CPU 0, the rest on CPU 1
#
# A run passes when every request got a 2xx, p99 ack <= P99_TARGET_MS, and deliveries kept
# pace: the fake held every committed delivery within PACE_S s of the load's end. SEARCH=1
# tries the rates of RATES in order for each setup and stops that setup at its first miss.
#
# Environment: RATE (2000), DURATION (60 s), SETUPS ("sqlite pg1 pg2"), ALERTS (5),
# LOADGEN_THREADS (1), SETTLE (2 s between readiness and the load), DRAIN_WAIT (60 s),
# PACE_S (2 s), P99_TARGET_MS (25), SEARCH (0), RATES ("1000 1500 2000 2500 3000 3500
# 4000"), plus CONCURRENCY, RATE_LIMIT, LEASE, PG_POOL_SIZE (the config, see common.sh),
# SKIP_BUILD, KEEP, AMRELAY_LOG_LEVEL, PIN.

source "$(dirname "$0")/common.sh"

RATE="${RATE:-2000}"
DURATION="${DURATION:-60}"
SETUPS="${SETUPS:-sqlite pg1 pg2}"
ALERTS="${ALERTS:-5}"
LOADGEN_THREADS="${LOADGEN_THREADS:-1}"
SETTLE="${SETTLE:-2}"
DRAIN_WAIT="${DRAIN_WAIT:-60}"
PACE_S="${PACE_S:-2}"
P99_TARGET_MS="${P99_TARGET_MS:-25}"
SEARCH="${SEARCH:-0}"
RATES="${RATES:-1000 1500 2000 2500 3000 3500 4000}"

for s in $SETUPS; do
    case $s in sqlite | pg1 | pg2) ;; *)
        log "unknown setup $s (expected sqlite, pg1, pg2)"
        exit 2
        ;;
    esac
done

build
bench_tmp
REV="$(bench_rev)"
RESULTS="$BENCH_TMP/results.jsonl"
: >"$RESULTS"
TRIAL=0

sink_stat() {
    curl -fsS --max-time 5 "$STATS_URL" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# Committed deliveries (all instances) not yet at the fake.
undelivered_now() {
    echo $(($(metric_sum amrelay_deliveries_enqueued_total) - $(sink_stat distinct_webhook_ids)))
}

# run_trial SETUP RATE: one run on a fresh store; appends its JSON line to RESULTS and
# prints it; sets PASSED to 1 when it passed, else 0. (Called as a plain command, so that
# set -e still stops the script on a failure inside it.)
run_trial() {
    local setup=$1 rate=$2
    TRIAL=$((TRIAL + 1))
    local dir="$BENCH_TMP/$TRIAL-$setup-$rate"
    mkdir -p "$dir"
    local instances=1 url_file="" pg_dir=""
    [[ $setup == pg2 ]] && instances=2
    if [[ $setup != sqlite ]]; then
        start_pg "pg-$TRIAL"
        pg_dir=$PG_DIR
        url_file=$PG_URL_FILE
    fi

    local sink_port
    sink_port="$(free_port)"
    start_sink "$sink_port" "$dir/sinkfake"
    local am_pids=() urls=() logs=() i port name=""
    METRICS_URLS=()
    for ((i = 0; i < instances; i++)); do
        port="$(free_port)"
        [[ -n "$url_file" ]] && name="bench-$i"
        write_config "$dir/amrelay-$i.toml" "$port" "http://127.0.0.1:$sink_port/hook" \
            "$dir/data-$i" "$name" "$url_file"
        start_amrelay "$dir/amrelay-$i.toml" "$port" "$dir/amrelay-$i.log"
        am_pids+=("$STARTED_PID")
        logs+=("$dir/amrelay-$i.log")
        urls+=("http://127.0.0.1:$port/webhook/alertmanager")
        METRICS_URLS+=("http://127.0.0.1:$port/metrics")
    done
    log "trial $TRIAL: $setup at ${rate}/s for ${DURATION}s; amrelay pids ${am_pids[*]}, sinkfake $SINK_PID, dir $dir"
    sleep "$SETTLE"

    # Every 5 s: undelivered (committed minus at the fake), RSS of each instance.
    (
        t=0
        echo "t_s undelivered rss_kib..." >"$dir/samples.txt"
        while ((t <= DURATION + DRAIN_WAIT)); do
            rss=""
            for p in "${am_pids[@]}"; do rss+=" $(proc_kib "$p" VmRSS 2>/dev/null || echo NaN)"; done
            echo "$t $(undelivered_now 2>/dev/null || echo NaN)$rss" >>"$dir/samples.txt"
            sleep 5
            t=$((t + 5))
        done
    ) &
    local sampler=$!
    PIDS+=("$sampler")

    local am0 pg0=0 sink0
    am0="$(cpu_seconds_sum "${am_pids[@]}")"
    [[ -n "$pg_dir" ]] && pg0="$(pg_cpu_seconds "$pg_dir")"
    sink0="$(cpu_seconds "$SINK_PID")"

    /usr/bin/time -f '%e %U %S %M' -o "$dir/loadgen.time" \
        "${PIN_AUX[@]}" "$BIN/examples/loadgen" --url "$(IFS=,; echo "${urls[*]}")" \
        --rate "$rate" --duration "$DURATION" --alerts "$ALERTS" --threads "$LOADGEN_THREADS" \
        >"$dir/loadgen.json"

    local load_end_ns am1 pg1=0 sink1 undelivered_end
    load_end_ns=$(date +%s%N)
    undelivered_end="$(undelivered_now)"
    am1="$(cpu_seconds_sum "${am_pids[@]}")"
    [[ -n "$pg_dir" ]] && pg1="$(pg_cpu_seconds "$pg_dir")"
    sink1="$(cpu_seconds "$SINK_PID")"

    # Poll (bounded) until the fake holds every delivery amrelay committed.
    local drained=null since_ms
    ((undelivered_end <= 0)) && drained=0.0
    while [[ $drained == null ]]; do
        since_ms=$((($(date +%s%N) - load_end_ns) / 1000000))
        if (($(undelivered_now) <= 0)); then
            drained="$(awk -v ms="$since_ms" 'BEGIN { printf "%.1f", ms / 1000 }')"
            break
        fi
        ((since_ms > DRAIN_WAIT * 1000)) && break
        sleep 0.1
    done
    local am2 pg2=0 undelivered_after enqueued rejected peak_kib=0 k
    am2="$(cpu_seconds_sum "${am_pids[@]}")"
    [[ -n "$pg_dir" ]] && pg2="$(pg_cpu_seconds "$pg_dir")"
    undelivered_after="$(undelivered_now)"
    enqueued="$(metric_sum amrelay_deliveries_enqueued_total)"
    rejected="$(metric_sum amrelay_webhooks_rejected_total)"
    for p in "${am_pids[@]}"; do
        k="$(proc_kib "$p" VmHWM)"
        ((k > peak_kib)) && peak_kib=$k
    done
    curl -fsS --max-time 5 "$STATS_URL" >"$dir/sink.json"
    local warn err
    warn="$(cat "${logs[@]}" | grep -c ' WARN ' || true)"
    err="$(cat "${logs[@]}" | grep -c ' ERROR ' || true)"

    stop_pid "$sampler"
    for p in "${am_pids[@]}"; do stop_pid "$p"; done
    stop_pid "$SINK_PID"
    [[ -n "$pg_dir" ]] && stop_pg "$pg_dir"
    METRICS_URLS=()

    local lg_wall lg_user lg_sys lg_maxrss
    read -r lg_wall lg_user lg_sys lg_maxrss <"$dir/loadgen.time"
    SETUP=$setup TRIAL_RATE=$rate INSTANCES=$instances DIR=$dir \
        AM0=$am0 AM1=$am1 AM2=$am2 PG0=$pg0 PG1=$pg1 PG2=$pg2 SINK0=$sink0 SINK1=$sink1 \
        UNDELIVERED_END=$undelivered_end UNDELIVERED_AFTER=$undelivered_after DRAINED=$drained \
        ENQUEUED=$enqueued REJECTED=$rejected PEAK_KIB=$peak_kib WARN=$warn ERR=$err \
        LG_CPU="$lg_user $lg_sys" REV=$REV DURATION=$DURATION ALERTS=$ALERTS PACE_S=$PACE_S \
        P99_TARGET_MS=$P99_TARGET_MS PIN="${PIN:-0}" \
        python3 - <<'EOF' | tee -a "$RESULTS"
import json, os, time
e = os.environ
lg = json.load(open(e["DIR"] + "/loadgen.json"))
sink = json.load(open(e["DIR"] + "/sink.json"))
f = lambda k: float(e[k])
notifications = int(e["ENQUEUED"])
am, pg = f("AM2") - f("AM0"), f("PG2") - f("PG0")
postgres = e["SETUP"] != "sqlite"
drained = json.loads(e["DRAINED"])
keeps_pace = drained is not None and drained <= f("PACE_S")
per = lambda cpu: round(cpu / notifications * 1000, 4) if notifications else None
out = {
    "bench": "ha",
    "setup": e["SETUP"],
    "instances": int(e["INSTANCES"]),
    "backend": "postgres" if postgres else "sqlite",
    "revision": e["REV"],
    "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "pinned": e["PIN"] == "1",
    "rate": float(e["TRIAL_RATE"]), "duration_s": float(e["DURATION"]), "alerts": int(e["ALERTS"]),
    "sent": lg["sent"], "acked": lg["ok"], "non_2xx": lg["non_2xx"], "errors": lg["errors"],
    "refused": sum(lg["non_2xx"].values()) + lg["errors"],
    "ack_p50_ms": lg["p50_ms"], "ack_p90_ms": lg["p90_ms"], "ack_p99_ms": lg["p99_ms"],
    "ack_max_ms": lg["max_ms"],
    "per_url": lg.get("per_url"),
    "notifications": notifications,
    "undelivered_at_load_end": int(e["UNDELIVERED_END"]),
    "all_delivered_s_after_load": drained,  # null: not within DRAIN_WAIT
    "undelivered_after_drain_wait": int(e["UNDELIVERED_AFTER"]),
    "keeps_pace": keeps_pace,
    "sink_requests": sink["requests"], "sink_repeats": sink["repeats"],
    "amrelay_cpu_s": round(am, 2),
    "amrelay_cpu_s_during_load": round(f("AM1") - f("AM0"), 2),
    "amrelay_cpu_ms_per_notification": per(am),
    "postgres_cpu_s": round(pg, 2) if postgres else None,
    "postgres_cpu_s_during_load": round(f("PG1") - f("PG0"), 2) if postgres else None,
    "postgres_cpu_ms_per_notification": per(pg) if postgres else None,
    "sinkfake_cpu_s_during_load": round(f("SINK1") - f("SINK0"), 2),
    "loadgen_cpu_s": round(sum(map(float, e["LG_CPU"].split())), 2),
    "loadgen_max_schedule_lag_ms": lg["max_schedule_lag_ms"],
    "loadgen_peak_inflight": lg["peak_inflight"],
    "peak_rss_mib_max_instance": round(int(e["PEAK_KIB"]) / 1024, 1),
    "amrelay_rejected": int(e["REJECTED"]) if e["REJECTED"] != "NaN" else None,
    "amrelay_warn_lines": int(e["WARN"]), "amrelay_error_lines": int(e["ERR"]),
}
out["pass"] = (out["refused"] == 0 and out["acked"] == out["sent"]
               and out["ack_p99_ms"] <= f("P99_TARGET_MS") and keeps_pace)
print(json.dumps(out))
EOF
    PASSED="$(python3 -c 'import json,sys; print(int(json.loads(open(sys.argv[1]).readlines()[-1])["pass"]))' "$RESULTS")"
}

if [[ "$SEARCH" == 1 ]]; then
    for setup in $SETUPS; do
        for rate in $RATES; do
            run_trial "$setup" "$rate"
            if [[ "$PASSED" != 1 ]]; then
                log "$setup misses at ${rate}/s; next setup"
                break
            fi
        done
    done
else
    for setup in $SETUPS; do
        run_trial "$setup" "$RATE"
    done
fi

# Side by side: one column per trial, then (SEARCH=1) the highest passing rate per setup.
RESULTS="$RESULTS" SEARCH="$SEARCH" P99_TARGET_MS="$P99_TARGET_MS" python3 - <<'EOF'
import json, os
runs = [json.loads(l) for l in open(os.environ["RESULTS"]) if l.strip()]
def fmt(v):
    if v is None: return "-"
    if isinstance(v, bool): return "yes" if v else "no"
    if isinstance(v, float): return f"{v:g}"
    return str(v)
rows = [
    ("setup", lambda r: f'{r["setup"]} ({r["instances"]}x {r["backend"]})'),
    ("rate/s x s", lambda r: f'{r["rate"]:g} x {r["duration_s"]:g}'),
    ("acked / sent", lambda r: f'{r["acked"]}/{r["sent"]}'),
    ("refused", lambda r: r["refused"]),
    ("ack p50 ms", lambda r: r["ack_p50_ms"]),
    ("ack p99 ms", lambda r: r["ack_p99_ms"]),
    ("undelivered at load end", lambda r: r["undelivered_at_load_end"]),
    ("all delivered after s", lambda r: r["all_delivered_s_after_load"]),
    ("keeps pace", lambda r: r["keeps_pace"]),
    ("amrelay CPU s", lambda r: r["amrelay_cpu_s"]),
    ("PostgreSQL CPU s", lambda r: r["postgres_cpu_s"]),
    ("amrelay CPU ms/notif", lambda r: r["amrelay_cpu_ms_per_notification"]),
    ("PostgreSQL CPU ms/notif", lambda r: r["postgres_cpu_ms_per_notification"]),
    ("peak RSS MiB (max inst)", lambda r: r["peak_rss_mib_max_instance"]),
    ("pass", lambda r: r["pass"]),
]
table = [[name] + [fmt(get(r)) for r in runs] for name, get in rows]
widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
for row in table:
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
if os.environ["SEARCH"] == "1":
    best = {}
    for r in runs:
        best.setdefault(r["setup"], None)
        if r["pass"]:
            best[r["setup"]] = max(best[r["setup"]] or 0, r["rate"])
    # A setup that passed every rate of RATES may go higher: say so.
    top = {s: all(r["pass"] for r in runs if r["setup"] == s) for s in best}
    print(json.dumps({"bench": "ha-search", "p99_target_ms": float(os.environ["P99_TARGET_MS"]),
                      "highest_passing_rate": best, "passed_every_rate_tried": top}))
EOF
