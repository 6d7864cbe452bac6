#!/usr/bin/env bash
# seeds-smoke.sh — end-to-end smoke test of `feedpost publish` on the 5 real issues in shared/seeds.
#
# Checks, in a temp dir (nothing in the repo is touched):
#   1. `feedpost publish` sends the newest seed issue to 1,000 generated subscribers
#      (gen-corpus.py 1 1000) through a local SMTP sink (Postfix's smtp-sink on 127.0.0.1,
#      capturing every transaction to a dump file), and says `sent N, already sent 0, ..., failed 0`;
#   2. a second `publish` sends nothing (the ledger makes delivery exactly-once):
#      `sent 0, already sent N, ...`;
#   3. the sink received exactly N messages, each subscriber at most once, every recipient a
#      subscriber, and sent + skipped = 1,000;
#   4. the feeds folder parses (scripts/parse-feeds.py) and validates with the W3C feed validator
#      (scripts/validate-feeds.sh, needs $FEEDVALIDATOR, default /opt/feedvalidator).
# Prints the two summary lines, the messages the sink received, then both feed checks.
# Exit: 0 when all pass, non-zero on any failure.
#
# Run:   scripts/seeds-smoke.sh     (builds target/release/feedpost unless FEEDPOST is set)
# Env:   FEEDPOST, FEEDPOST_SHARED, FEEDVALIDATOR, SINK_PORT (default 2526; another free port if busy),
#        BENCH_KEEP=1 keeps the temp dir.
# Needs: root or preinstalled postfix (smtp-sink), python3 with feedparser.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SUBSCRIBERS=1000
ensure_postfix_tools
ensure_feedpost
make_tmp seeds-smoke
chmod 0711 "$TMP"      # smtp-sink drops to user nobody and must reach its dump folder

SEEDS="$(cd "$SHARED/seeds" && pwd)"
python3 "$GEN" 1 "$SUBSCRIBERS" "$TMP/corpus" >/dev/null
SITE="$TMP/site"
mkdir -p "$SITE" "$TMP/sink/dump"
cp "$TMP/corpus/subscribers.toml" "$SITE/subscribers.toml"
[ "$(id -u)" = 0 ] && chown nobody "$TMP/sink/dump"

PORT="$(free_port "${SINK_PORT:-2526}")"
# -D: append every transaction (with X-Rcpt-Args: records) to one dump file.
start_sink "$PORT" "$TMP/sink" -D "$TMP/sink/dump/all"

{ site_toml "$SEEDS" "$SOFA_DESCRIPTION"; smtp_toml "$PORT" 16; } > "$SITE/feedpost.toml"

fail=0
# The summary line feedpost prints on stdout: "sent N, already sent N, skipped N, failed N".
SUMMARY_RE='^sent ([0-9]+), already sent ([0-9]+), skipped ([0-9]+), failed ([0-9]+)'
sent=(); already=(); skipped=(); failed=()
for round in 1 2; do
  rc=0
  timeout 600 "$FEEDPOST" --config "$SITE/feedpost.toml" publish \
    >"$TMP/publish-$round.out" 2>"$TMP/publish-$round.err" || rc=$?
  line="$(grep -E "$SUMMARY_RE" "$TMP/publish-$round.out" | tail -n 1 || true)"
  echo "publish $round: ${line:-<no summary line>} (exit $rc)"
  if [ "$rc" != 0 ] || ! [[ "$line" =~ $SUMMARY_RE ]]; then
    fail=1; echo "--- stderr of publish $round:" >&2; tail -n 30 "$TMP/publish-$round.err" >&2
    continue
  fi
  sent[round]="${BASH_REMATCH[1]}"; already[round]="${BASH_REMATCH[2]}"
  skipped[round]="${BASH_REMATCH[3]}"; failed[round]="${BASH_REMATCH[4]}"
done

# feedpost has returned, so every accepted message is counted; allow a moment for the counter.
wait_sink_count "$TMP/sink" "${sent[1]:-0}" 5 || true
received="$(sink_count "$TMP/sink")"
echo "sink: received $received messages"

check() {  # check "CONDITION" "message on failure"
  if ! eval "$1"; then echo "FAIL: $2" >&2; fail=1; fi
}
if [ -n "${sent[1]:-}" ] && [ -n "${sent[2]:-}" ]; then
  check "[ ${failed[1]} = 0 ] && [ ${failed[2]} = 0 ]" "failed deliveries (${failed[1]}, ${failed[2]})"
  check "[ ${sent[1]} -gt 0 ]" "first publish sent nothing"
  check "[ $((sent[1] + skipped[1])) = $SUBSCRIBERS ]" \
    "first publish: sent ${sent[1]} + skipped ${skipped[1]} != $SUBSCRIBERS subscribers"
  check "[ ${already[1]} = 0 ]" "first publish: already sent ${already[1]} (ledger not fresh?)"
  check "[ ${sent[2]} = 0 ]" "second publish sent ${sent[2]} again (not exactly-once)"
  check "[ ${already[2]} = ${sent[1]} ]" "second publish: already sent ${already[2]}, expected ${sent[1]}"
  check "[ $received = ${sent[1]} ]" "sink received $received messages, feedpost reported ${sent[1]}"
fi
# Per-recipient check from the dump: nobody twice, nobody outside the subscriber list.
if [ -f "$TMP/sink/dump/all" ]; then
  if ! python3 - "$TMP/sink/dump/all" "$SITE/subscribers.toml" <<'PY'
import re, sys, tomllib, collections
dump = open(sys.argv[1], encoding="utf-8", errors="replace").read()
subs = {s["email"].lower() for s in tomllib.load(open(sys.argv[2], "rb"))["subscribers"]}
rcpts = [m.lower() for m in re.findall(r"^X-Rcpt-Args: (?:TO:)?<([^>]*)>", dump, re.M | re.I)]
dup = [a for a, n in collections.Counter(rcpts).items() if n > 1]
stranger = sorted(set(rcpts) - subs)
print("sink: %d recipients, %d distinct, %d twice or more, %d not subscribers"
      % (len(rcpts), len(set(rcpts)), len(dup), len(stranger)))
for a in (dup[:5] + stranger[:5]):
    print("  e.g. " + a)
sys.exit(1 if dup or stranger else 0)
PY
  then fail=1; fi
else
  echo "sink: no dump file (no message received)"
fi

FEEDS="$SITE/feeds"
if [ -d "$FEEDS" ]; then
  echo "--- parse-feeds.py $FEEDS"
  python3 "$SCRIPT_DIR/parse-feeds.py" "$FEEDS" || fail=1
  echo "--- validate-feeds.sh $FEEDS"
  bash "$SCRIPT_DIR/validate-feeds.sh" "$FEEDS" || fail=1
else
  echo "FAIL: no feeds folder at $FEEDS after publish" >&2; fail=1
fi

if [ "$fail" = 0 ]; then echo "seeds-smoke: OK"; else echo "seeds-smoke: FAILED"; fi
exit "$fail"
