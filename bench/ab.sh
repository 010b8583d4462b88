#!/usr/bin/env bash
# Before/after in one sitting: runs bench/ingest.sh and bench/latency.sh of two checkouts
# (each with its own release binaries already built), interleaved A B A B, so both see
# the same machine. Prints one JSON line per run, tagged "a" or "b".
#
#   git worktree add /tmp/before <rev> && (cd /tmp/before && cargo build --release --examples --bins)
#   cargo build --release --examples --bins
#   bench/ab.sh /tmp/before .
#
# Environment: ROUNDS (2), INGEST_RATE (2000), INGEST_DURATION (20), LATENCY_RATE (50),
# LATENCY_DURATION (20), PIN (passed on: 1 pins amrelay to CPU 0, the load to CPU 1; the
# older checkout's scripts may not know it).
set -euo pipefail

A="$(cd "${1:?before checkout}" && pwd)"
B="$(cd "${2:?after checkout}" && pwd)"
ROUNDS="${ROUNDS:-2}"

run() {
    local tag=$1 dir=$2 script=$3 rate=$4 duration=$5
    local out
    out="$(cd "$dir" && SKIP_BUILD=1 RATE="$rate" DURATION="$duration" PIN="${PIN:-0}" \
        "bench/$script" 2>/dev/null | grep '^{"bench"' | tail -1)"
    echo "{\"ab\":\"$tag\",\"dir\":\"$dir\",\"run\":$out}"
}

for ((i = 1; i <= ROUNDS; i++)); do
    for pair in "a $A" "b $B"; do
        set -- $pair
        run "$1" "$2" ingest.sh "${INGEST_RATE:-2000}" "${INGEST_DURATION:-20}"
        run "$1" "$2" latency.sh "${LATENCY_RATE:-50}" "${LATENCY_DURATION:-20}"
    done
done
