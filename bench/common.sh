# Shared setup for the bench/ scripts; sourced, not run.
#
# Builds the release binaries, writes a config to a temp dir (one webhook channel with no
# rate limit pointing at examples/sinkfake.rs, one catch-all route, the store in the temp
# dir), starts the sink fake and amrelay on free 127.0.0.1 ports, and stops both on exit.
# start_stack does all of that for one instance on SQLite; bench/ha.sh and
# bench/takeover.sh use the parts (write_config, start_sink, start_amrelay, start_pg) to
# run several instances on a throwaway PostgreSQL (scripts/pg-throwaway).
#
# Environment:
#   SKIP_BUILD=1        do not run cargo build (use the binaries already in the target dir)
#   KEEP=1              keep the temp dir (config, store, logs, PostgreSQL data) after the run
#   AMRELAY_LOG_LEVEL   amrelay's log.level (default info, as shipped)
#   PIN=1               pin amrelay (every instance) to CPU 0 and the load generator, the
#                       sink fake and PostgreSQL to CPU 1 (taskset), so that amrelay has
#                       exactly one core
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
# pg-throwaway clusters started by start_pg, stopped on exit.
PG_DIRS=()
PG_THROWAWAY="$ROOT/scripts/pg-throwaway"

# PIN=1: command prefixes for amrelay and for everything else (see the header).
PIN_AMRELAY=()
PIN_AUX=()
if [[ "${PIN:-0}" == 1 ]]; then
    PIN_AMRELAY=(taskset -c 0)
    PIN_AUX=(taskset -c 1)
fi

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
    local d
    for d in "${PG_DIRS[@]}"; do
        if [[ "${KEEP:-0}" == 1 || $rc -ne 0 ]]; then
            "$PG_THROWAWAY" pause "$d" >/dev/null 2>&1 || true
        else
            "$PG_THROWAWAY" stop "$d" >/dev/null 2>&1 || true
        fi
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

# bench_tmp: creates the run's temp dir (BENCH_TMP) once.
bench_tmp() {
    if [[ -z "$BENCH_TMP" ]]; then
        BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/amrelay-bench.XXXXXX")"
    fi
}

# write_config FILE PORT SINK_URL DATA_DIR [INSTANCE PG_URL_FILE]: an amrelay config
# listening on 127.0.0.1:PORT, with the store (SQLite) or the local files (PostgreSQL) in
# DATA_DIR, and one webhook channel `bench-sink` to SINK_URL (no rate_limit unless
# RATE_LIMIT is set, CONCURRENCY if set) behind a catch-all route. With PG_URL_FILE the
# store is that PostgreSQL (sslmode disable; LEASE and PG_POOL_SIZE if set) and INSTANCE
# names the instance. Checks it with `amrelay check-config`.
write_config() {
    local file=$1 port=$2 sink_url=$3 data=$4 instance=${5:-} url_file=${6:-}
    local rate_limit_line="" server_extra="" storage_extra=""
    if [[ -n "${RATE_LIMIT:-}" ]]; then rate_limit_line="rate_limit = \"$RATE_LIMIT\""; fi
    if [[ -n "$instance" ]]; then server_extra="instance = \"$instance\""; fi
    if [[ -n "$url_file" ]]; then
        storage_extra="backend = \"postgres\"
url_file = \"$url_file\"
sslmode = \"disable\"
${PG_POOL_SIZE:+pool_size = $PG_POOL_SIZE}
${LEASE:+lease = \"$LEASE\"}"
    fi
    mkdir -p "$data"
    cat >"$file" <<EOF
# Written by bench/common.sh.
[server]
listen = "127.0.0.1:$port"
$server_extra

[storage]
path = "$data"
$storage_extra

[log]
format = "text"
level = "$AMRELAY_LOG_LEVEL"

[[channels]]
name = "bench-sink"
kind = "webhook"
url = "$sink_url"
# no rate_limit unless RATE_LIMIT is set: a webhook channel has none by default
${CONCURRENCY:+concurrency = $CONCURRENCY}
$rate_limit_line

[[routes]]
channels = ["bench-sink"]
EOF
    "$BIN/amrelay" check-config --config "$file" >/dev/null
}

# start_sink PORT OUT_PREFIX [ARGS...]: starts the sink fake on 127.0.0.1:PORT (pinned
# with PIN=1), stdout and stderr to OUT_PREFIX.out/.err, extra ARGS passed on; waits for
# it; sets SINK_PID and STATS_URL.
start_sink() {
    local port=$1 out=$2
    shift 2
    "${PIN_AUX[@]}" "$BIN/examples/sinkfake" --listen "127.0.0.1:$port" "$@" \
        >"$out.out" 2>"$out.err" &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    STATS_URL="http://127.0.0.1:$port/stats"
    wait_http "$STATS_URL" 100
}

# start_amrelay CONFIG PORT LOG: `amrelay serve` (pinned with PIN=1), output appended to
# LOG; waits for /readyz on PORT (up to 30 s); sets STARTED_PID.
start_amrelay() {
    local config=$1 port=$2 log=$3
    "${PIN_AMRELAY[@]}" "$BIN/amrelay" serve --config "$config" >>"$log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    wait_http "http://127.0.0.1:$port/readyz" 300
}

# stop_pid PID [SIGNAL]: sends SIGNAL (TERM) to a process this script started, waits up
# to 10 s for it to exit (then SIGKILL), and forgets it, so that the exit trap cannot
# signal a reused pid.
stop_pid() {
    local pid=$1 sig=${2:-TERM} n=0 i
    # stderr off: bash's own "Killed" notice for the job is noise here.
    {
        kill "-$sig" "$pid" || true
        while kill -0 "$pid" && ((n < 100)); do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "$pid" || true
        wait "$pid" || true
    } 2>/dev/null
    for i in "${!PIDS[@]}"; do
        if [[ "${PIDS[i]}" == "$pid" ]]; then unset 'PIDS[i]'; fi
    done
    PIDS=("${PIDS[@]}")
}

# start_pg NAME: a throwaway PostgreSQL cluster in $BENCH_TMP/NAME (scripts/pg-throwaway;
# installs Debian's postgresql when missing). Sets PG_DIR, PG_URL and PG_URL_FILE (the URL
# in a file, for storage.url_file). With PIN=1 the postmaster and its children are moved to
# CPU 1; backends forked later inherit that.
start_pg() {
    bench_tmp
    # Run as root, pg-throwaway runs the server as an unprivileged user, which must be
    # able to reach the directory.
    chmod 711 "$BENCH_TMP"
    PG_DIR="$BENCH_TMP/$1"
    PG_URL="$("$PG_THROWAWAY" start "$PG_DIR")"
    PG_DIRS+=("$PG_DIR")
    PG_URL_FILE="$BENCH_TMP/$1.url"
    echo "$PG_URL" >"$PG_URL_FILE"
    if [[ "${PIN:-0}" == 1 ]]; then
        local pid
        for pid in $(pg_pids "$PG_DIR"); do
            taskset -a -cp 1 "$pid" >/dev/null
        done
    fi
    log "PostgreSQL $PG_URL in $PG_DIR"
}

# stop_pg DIR: stops a cluster from start_pg (keeps its data with KEEP=1).
stop_pg() {
    local d=$1 i
    if [[ "${KEEP:-0}" == 1 ]]; then
        "$PG_THROWAWAY" pause "$d" >/dev/null
    else
        "$PG_THROWAWAY" stop "$d" >/dev/null
    fi
    for i in "${!PG_DIRS[@]}"; do
        if [[ "${PG_DIRS[i]}" == "$d" ]]; then unset 'PG_DIRS[i]'; fi
    done
    PG_DIRS=("${PG_DIRS[@]}")
}

# pg_pids DIR: the postmaster's pid and its children's.
pg_pids() {
    local pm
    pm="$(head -n 1 "$1/data/postmaster.pid")"
    echo "$pm"
    ps -o pid= --ppid "$pm" || true
}

# pg_cpu_seconds DIR: CPU time (user+system) of the cluster in DIR so far: the postmaster
# and its live children, plus the children that have exited (the kernel adds their time
# to the postmaster's cutime/cstime when it reaps them).
pg_cpu_seconds() {
    python3 - "$1/data/postmaster.pid" <<'EOF'
import os, sys
pm = int(open(sys.argv[1]).readline())
total = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue  # exited meanwhile
    # fields[1] is the ppid; fields[11:15] utime, stime, cutime, cstime
    if int(pid) == pm or int(fields[1]) == pm:
        total += sum(int(x) for x in fields[11:15])
print(round(total / os.sysconf("SC_CLK_TCK"), 2))
EOF
}

# start_stack: one instance on SQLite. Sets SINK_PORT, AM_PORT, AM_PID, SINK_PID,
# WEBHOOK_URL, METRICS_URL, STATS_URL.
start_stack() {
    bench_tmp
    SINK_PORT="$(free_port)"
    AM_PORT="$(free_port)"
    while [[ "$AM_PORT" == "$SINK_PORT" ]]; do AM_PORT="$(free_port)"; done
    write_config "$BENCH_TMP/amrelay.toml" "$AM_PORT" "http://127.0.0.1:$SINK_PORT/hook" \
        "$BENCH_TMP/data"
    start_sink "$SINK_PORT" "$BENCH_TMP/sinkfake"
    start_amrelay "$BENCH_TMP/amrelay.toml" "$AM_PORT" "$BENCH_TMP/amrelay.log"
    AM_PID=$STARTED_PID

    WEBHOOK_URL="http://127.0.0.1:$AM_PORT/webhook/alertmanager"
    METRICS_URL="http://127.0.0.1:$AM_PORT/metrics"
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

# cpu_seconds_sum PID...: cpu_seconds summed over several processes.
cpu_seconds_sum() {
    local pid total=0
    for pid in "$@"; do
        total="$(awk -v a="$total" -v b="$(cpu_seconds "$pid")" 'BEGIN { printf "%.2f", a + b }')"
    done
    echo "$total"
}

# metric_sum NAME [FORMAT]: sum of every sample of NAME (any labels) on amrelay's /metrics;
# over every URL in the array METRICS_URLS when it is set (several instances), else on
# METRICS_URL.
metric_sum() {
    local urls=("${METRICS_URLS[@]:-$METRICS_URL}") u
    for u in "${urls[@]}"; do
        curl -fsS --max-time 5 "$u"
    done | awk -v n="$1" -v fmt="${2:-%.0f}" '
        $1 == n || index($1, n "{") == 1 { s += $NF; found = 1 }
        END { if (found) printf fmt "\n", s; else print "NaN" }'
}
