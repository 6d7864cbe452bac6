#!/usr/bin/env bash
# load-serve.sh — `feedpost serve` under load, with a publish running at the same time.
#
# Starts, in a temporary site (the five seed issues of tests/fixtures/seeds, PUBLISH_READERS
# readers in subscribers.toml):
#   - Postfix's smtp-sink on 127.0.0.1 (accepts and drops mail): confirmation emails and the issue
#     go there over SMTP;
#   - `feedpost serve` on an ephemeral loopback port;
#   - examples/load_serve.rs: REQUESTS requests (default 2,000) from CLIENTS threads (default 50),
#     each client subscribing a new address (POST /subscribe) then unsubscribing it (the RFC 8058
#     one-click POST /unsubscribe?token=...), one keep-alive connection per client;
#   - `feedpost publish` of the newest seed to the PUBLISH_READERS readers, started with the load,
#     on the same ledger file the server writes subscribers to.
# Prints the load's requests/s, latency percentiles (p99: goal under 50 ms on loopback) and errors
# (goal 0), publish's summary (goal: every reader sent, none failed or deferred, and a second
# publish sends nothing), the subscriber rows the server left (goal: every load address
# unsubscribed, none pending or confirmed) and the messages smtp-sink counted (goal: exactly one
# per reader and one per confirmation: nothing lost, nothing twice).
#
# The flood limit: every load client comes from 127.0.0.1, i.e. one client to the server, so the
# site sets `client_requests_per_minute = 1000000` (the limiter still runs on every request; its
# cost is in the figures). Confirmation emails are limited per address; each address here is new.
# The machine's two cores are shared by the server, the load threads, publish and smtp-sink, and
# by whatever else runs: read the figures with that in mind.
#
# Run:   scripts/load-serve.sh      (builds feedpost and the example in release)
# Exit:  0 when every goal is met, 1 otherwise (after printing everything).
# Env:   REQUESTS=2000, CLIENTS=50, PUBLISH_READERS=2000 (0: no publish), BENCH_KEEP=1 keeps the
#        temp dir, STEP_TIMEOUT=1800 (s).
# Needs: root to install the Debian package `postfix` (for smtp-sink; not configured or started)
#        when it is missing; python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

REQUESTS="${REQUESTS:-2000}"
CLIENTS="${CLIENTS:-50}"
READERS="${PUBLISH_READERS:-2000}"
ensure_postfix_tools
ensure_feedpost
echo "$_ME: building examples/load_serve.rs (release)..." >&2
(cd "$REPO" && timeout 3600 cargo build --release --quiet --example load_serve) \
  || die "cargo build --release --example load_serve failed"
LOAD="$(cd "$REPO" && cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/examples/load_serve"
make_tmp load-serve

PORT="$(free_port)"
start_sink "$PORT" "$TMP/sink"

SITE="$TMP/site"
mkdir -p "$SITE"
cp -r "$REPO/tests/fixtures/seeds/issues" "$SITE/issues"
python3 - "$READERS" >"$SITE/subscribers.toml" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f'[[subscribers]]\nemail = "reader{i:05}@example.test"\nname = "读者 {i}"\n')
PY
{ site_toml; smtp_toml "$PORT" 8; } >"$SITE/feedpost.toml"
cat >>"$SITE/feedpost.toml" <<TOML

[serve]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1/"
# Every load client is 127.0.0.1: one client to the server. Keep the limiter on, out of reach.
client_requests_per_minute = 1000000
TOML
FEEDPOST_SECRET="$(openssl rand -base64 48 2>/dev/null || python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
export FEEDPOST_SECRET
export FEEDPOST_LOG=warn

mkfifo "$TMP/serve.out"
timeout "$STEP_TIMEOUT" "$FEEDPOST" --config "$SITE/feedpost.toml" serve >"$TMP/serve.out" 2>"$TMP/serve.log" &
SERVE_PID=$!
_CLEANUP_PIDS+=("$SERVE_PID")
exec 3<"$TMP/serve.out"
read -r -t 60 LINE <&3 || { cat "$TMP/serve.log" >&2; die "feedpost serve did not start"; }
BASE="${LINE#listening on }"
BASE="${BASE%/}"
echo "feedpost serve at $BASE; smtp-sink at 127.0.0.1:$PORT"
SERVER_PID="$(pgrep -P "$SERVE_PID" -x feedpost || echo "$SERVE_PID")"
# cpu_ms PID: the user + system CPU time the process has used, in milliseconds.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }
CPU0="$(cpu_ms "$SERVER_PID")"

PUBLISH_PID=""
if [ "$READERS" -gt 0 ]; then
  timeout "$STEP_TIMEOUT" "$FEEDPOST" --config "$SITE/feedpost.toml" publish >"$TMP/publish.out" 2>"$TMP/publish.log" &
  PUBLISH_PID=$!
fi
rc=0
"$LOAD" "$BASE" "$REQUESTS" "$CLIENTS" | tee "$TMP/load.out" || rc=1
CPU1="$(cpu_ms "$SERVER_PID")"
awk -v a="$CPU0" -v b="$CPU1" -v n="$REQUESTS" \
  'BEGIN { printf "server CPU during the load: %.0f ms, %.3f ms a request (confirmation emails included)\n", b - a, (b - a) / n }'
P99=$(sed -n 's/.* p99 \([0-9.]*\) .*/\1/p' "$TMP/load.out")
awk -v p="${P99:-1e9}" 'BEGIN { exit !(p < 50) }' || { echo "goal missed: p99 ${P99:-?} ms is not under 50 ms"; rc=1; }

if [ -n "$PUBLISH_PID" ]; then
  wait "$PUBLISH_PID" || { echo "publish failed:"; tail -n 20 "$TMP/publish.log"; rc=1; }
  echo "publish during the load: $(tail -n 1 "$TMP/publish.out")"
  grep -q "^sent $READERS, .*failed 0, deferred 0" "$TMP/publish.out" \
    || { echo "goal missed: every reader sent, none failed or deferred"; rc=1; }
  AGAIN="$("$FEEDPOST" --config "$SITE/feedpost.toml" publish 2>/dev/null | tail -n 1)"
  echo "publish again: $AGAIN"
  case "$AGAIN" in "sent 0,"*) ;; *) echo "goal missed: a second publish sends nothing"; rc=1 ;; esac
fi

kill -TERM "$SERVE_PID"
timeout 60 tail --pid="$SERVE_PID" -f /dev/null || true
ADDRESSES=$(( CLIENTS * (REQUESTS / CLIENTS / 2) ))
python3 - "$SITE/feedpost.sqlite" "$ADDRESSES" <<'PY' || rc=1
import sqlite3, sys
db, addresses = sys.argv[1], int(sys.argv[2])
rows = dict(sqlite3.connect(db).execute(
    "SELECT state, count(*) FROM subscribers WHERE address LIKE 'load-%' GROUP BY state"))
print("subscriber rows left by the load:", rows)
if rows != {"unsubscribed": addresses}:
    print(f"goal missed: all {addresses} load addresses unsubscribed, none pending or confirmed")
    sys.exit(1)
PY
wait_sink_count "$TMP/sink" "$(( READERS + ADDRESSES ))" 60 || true
COUNTED="$(sink_count "$TMP/sink")"
echo "smtp-sink counted $COUNTED messages (publish $READERS + confirmations $ADDRESSES)"
[ "$COUNTED" = "$(( READERS + ADDRESSES ))" ] \
  || { echo "goal missed: exactly one message per reader and per confirmation"; rc=1; }
if grep -E "ERROR|panicked" "$TMP/serve.log" >/dev/null; then
  echo "goal missed: the server logged errors:"; grep -E "ERROR|panicked" "$TMP/serve.log" | head -n 10; rc=1
fi
exit "$rc"
