# Shared setup for bench/ingest.sh and bench/latency.sh; sourced, not run.
#
# Builds the release binaries, writes a config to a temp dir (one webhook channel with no
# rate limit pointing at examples/sinkfake.rs, one catch-all route, the store in the temp
# dir), starts the sink fake and amrelay on free 127.0.0.1 ports, and stops both on exit.
#
# Environment:
#   SKIP_BUILD=1        do not run cargo build (use the binaries already in the target dir)
#   KEEP=1              keep the temp dir (config, store, logs) after the run
#   AMRELAY_LOG_LEVEL   amrelay's log.level (default info, as shipped)
#   CARGO_TARGET_DIR    honoured, as cargo does

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"
AMRELAY_LOG_LEVEL="${AMRELAY_LOG_LEVEL:-info}"

# What was measured: HEAD, plus "-dirty" when the sources differ from it (cargo builds the
# working tree). BENCH_REV overrides, e.g. for a tree exported with `git archive`.
bench_rev() {
    if [[ -n "${BENCH_REV:-}" ]]; then
        echo "$BENCH_REV"
    elif git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
        local rev
        rev="$(git -C "$ROOT" rev-parse --short HEAD)"
        if git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null; then
            echo "$rev"
        else
            echo "$rev-dirty"
        fi
    else
        echo unknown
    fi
}

BENCH_TMP=""
PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
    local rc=$?
    # Stop only what this script started, newest first, by pid.
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        local n=0
        while kill -0 "${PIDS[i]}" 2>/dev/null && ((n < 100)); do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "${PIDS[i]}" 2>/dev/null || true
    done
    if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]]; then
        if [[ "${KEEP:-0}" == 1 || $rc -ne 0 ]]; then
            log "kept $BENCH_TMP (config, store, logs)"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build() {
    if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
        log "SKIP_BUILD=1: using binaries in $BIN"
    else
        log "cargo build --release --examples --bins (waits if another cargo holds the lock)"
        (cd "$ROOT" && cargo build --release --examples --bins)
    fi
    local b
    for b in amrelay examples/loadgen examples/sinkfake; do
        [[ -x "$BIN/$b" ]] || { log "missing $BIN/$b"; exit 1; }
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL TRIES: polls until URL answers 2xx, 0.1 s apart, at most TRIES times.
wait_http() {
    local url=$1 tries=$2 n=0
    until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
        n=$((n + 1))
        if ((n >= tries)); then
            log "no answer from $url"
            return 1
        fi
        sleep 0.1
    done
}

# start_stack: sets SINK_PORT, AM_PORT, AM_PID, SINK_PID, WEBHOOK_URL, METRICS_URL.
start_stack() {
    BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/amrelay-bench.XXXXXX")"
    SINK_PORT="$(free_port)"
    AM_PORT="$(free_port)"
    while [[ "$AM_PORT" == "$SINK_PORT" ]]; do AM_PORT="$(free_port)"; done
    mkdir -p "$BENCH_TMP/data"
    local rate_limit_line=""
    if [[ -n "${RATE_LIMIT:-}" ]]; then rate_limit_line="rate_limit = \"$RATE_LIMIT\""; fi
    cat >"$BENCH_TMP/amrelay.toml" <<EOF
# Written by bench/common.sh.
[server]
listen = "127.0.0.1:$AM_PORT"

[storage]
path = "$BENCH_TMP/data"

[log]
format = "text"
level = "$AMRELAY_LOG_LEVEL"

[[channels]]
name = "bench-sink"
kind = "webhook"
url = "http://127.0.0.1:$SINK_PORT/hook"
# no rate_limit unless RATE_LIMIT is set: a webhook channel has none by default
${CONCURRENCY:+concurrency = $CONCURRENCY}
$rate_limit_line

[[routes]]
channels = ["bench-sink"]
EOF
    "$BIN/amrelay" check-config --config "$BENCH_TMP/amrelay.toml" >/dev/null

    "$BIN/examples/sinkfake" --listen "127.0.0.1:$SINK_PORT" \
        >"$BENCH_TMP/sinkfake.out" 2>"$BENCH_TMP/sinkfake.err" &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    wait_http "http://127.0.0.1:$SINK_PORT/stats" 100

    "$BIN/amrelay" serve --config "$BENCH_TMP/amrelay.toml" >"$BENCH_TMP/amrelay.log" 2>&1 &
    AM_PID=$!
    PIDS+=("$AM_PID")
    wait_http "http://127.0.0.1:$AM_PORT/readyz" 100

    WEBHOOK_URL="http://127.0.0.1:$AM_PORT/webhook/alertmanager"
    METRICS_URL="http://127.0.0.1:$AM_PORT/metrics"
    STATS_URL="http://127.0.0.1:$SINK_PORT/stats"
    log "amrelay pid $AM_PID on :$AM_PORT, sinkfake pid $SINK_PID on :$SINK_PORT, dir $BENCH_TMP"
}

# proc_kib PID FIELD: a VmXXX field of /proc/PID/status in KiB.
proc_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# cpu_seconds PID: user+system CPU time the process has used so far.
cpu_seconds() {
    python3 - "$1" <<'EOF'
import os, sys
with open(f"/proc/{sys.argv[1]}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
print(round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2))
EOF
}

# metric_sum NAME [FORMAT]: sum of every sample of NAME (any labels) on amrelay's /metrics.
metric_sum() {
    curl -fsS --max-time 5 "$METRICS_URL" | awk -v n="$1" -v fmt="${2:-%.0f}" '
        $1 == n || index($1, n "{") == 1 { s += $NF; found = 1 }
        END { if (found) printf fmt "\n", s; else print "NaN" }'
}
