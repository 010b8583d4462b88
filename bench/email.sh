#!/usr/bin/env bash
# Email paths under the drill's conditions (issue 3, "Benchmark"): a throttling SMTP relay
# (it answers each message only after DELAY seconds; tests/smtp/relay.py, a real aiosmtpd
# server) beside an email API fake (SendGrid-shaped, bench/email_burst.py). A burst of N
# notifications, each routed to both channels; per path, the time from "webhook sent" to
# "email accepted" (p50, p99). Run twice: the API channel alone, then beside the relay, so
# the second run shows whether the throttled relay holds the API path back.
#
#   bench/email.sh                 # N=50, DELAY=3
#
# Environment: N (50), DELAY (3, seconds per message at the relay), SMTP_CONCURRENCY (4),
# plus SKIP_BUILD, KEEP, AMRELAY_LOG_LEVEL (bench/common.sh).

source "$(dirname "$0")/common.sh"

N="${N:-50}"
DELAY="${DELAY:-3}"
SMTP_CONCURRENCY="${SMTP_CONCURRENCY:-4}"
TOKEN="bench-token"

build
BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/amrelay-bench.XXXXXX")"

# The relay (Debian's python3 has aiosmtpd).
echo "delay $DELAY" >"$BENCH_TMP/relay.control"
/usr/bin/python3 "$ROOT/tests/smtp/relay.py" --maildir "$BENCH_TMP/relay/mail" \
    --control "$BENCH_TMP/relay.control" >"$BENCH_TMP/relay.out" 2>"$BENCH_TMP/relay.err" &
PIDS+=("$!")
n=0
until grep -q listening "$BENCH_TMP/relay.out" 2>/dev/null; do
    n=$((n + 1)); ((n < 100)) || { log "relay did not start"; exit 1; }; sleep 0.1
done
RELAY_PORT="$(awk '{print $2}' "$BENCH_TMP/relay.out")"

run() { # run NAME CHANNELS
    local name=$1 channels=$2 dir="$BENCH_TMP/$1"
    mkdir -p "$dir/data"
    local fake_port am_port
    fake_port="$(free_port)"
    am_port="$(free_port)"
    echo "SG.bench-key" >"$dir/api.key"
    echo "$TOKEN" >"$dir/webhook.token"
    cat >"$dir/amrelay.toml" <<CONF
[server]
listen = "127.0.0.1:$am_port"
bearer_token_file = "$dir/webhook.token"

[storage]
path = "$dir/data"

[log]
level = "$AMRELAY_LOG_LEVEL"

[[channels]]
name = "mail-api"
kind = "email"
provider = "sendgrid"
api_url = "http://127.0.0.1:$fake_port"
api_key_file = "$dir/api.key"
from = "amrelay@example.com"
to = ["ops@example.com"]

[[channels]]
name = "mail-smtp"
kind = "email"
provider = "smtp"
host = "127.0.0.1"
port = $RELAY_PORT
tls = "none"
concurrency = $SMTP_CONCURRENCY
from = "amrelay@example.com"
to = ["ops@example.com"]

[[routes]]
channels = $channels
CONF
    python3 "$ROOT/bench/email_burst.py" fake --port "$fake_port" >"$dir/fake.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$fake_port/stats" 100
    "$BIN/amrelay" serve --config "$dir/amrelay.toml" >"$dir/amrelay.log" 2>&1 &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$am_port/readyz" 100
    local maildir_arg=()
    [[ "$channels" == *mail-smtp* ]] && maildir_arg=(--maildir "$BENCH_TMP/relay/mail")
    log "$name: burst of $N"
    python3 "$ROOT/bench/email_burst.py" burst --webhook "http://127.0.0.1:$am_port/webhook/alertmanager" \
        --token "$TOKEN" --n "$N" --fake "http://127.0.0.1:$fake_port/stats" \
        "${maildir_arg[@]}" --out "$BENCH_TMP/$name.json" >/dev/null
}

run api_alone '["mail-api"]'
run api_beside_throttled_relay '["mail-api", "mail-smtp"]'

rev="$(bench_rev)"
python3 - <<PY
import json, time
a = json.load(open("$BENCH_TMP/api_alone.json"))
b = json.load(open("$BENCH_TMP/api_beside_throttled_relay.json"))
out = {"bench": "email", "revision": "$rev",
       "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "n": $N, "relay_delay_s": $DELAY, "smtp_concurrency": $SMTP_CONCURRENCY,
       "api_alone": a, "api_beside_throttled_relay": b}
print(json.dumps(out))
print(f"API alone:            {a['api']['accepted']}/{a['n']} accepted, p50 {a['api']['p50_ms']} ms, p99 {a['api']['p99_ms']} ms")
print(f"API beside the relay: {b['api']['accepted']}/{b['n']} accepted, p50 {b['api']['p50_ms']} ms, p99 {b['api']['p99_ms']} ms")
print(f"throttled SMTP relay: {b['smtp']['accepted']}/{b['n']} accepted, p50 {b['smtp']['p50_ms']} ms, p99 {b['smtp']['p99_ms']} ms")
PY
