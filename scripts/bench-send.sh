#!/usr/bin/env bash
# bench-send.sh — how fast `feedpost publish` delivers over SMTP, against Postfix's smtp-source.
#
# Measures, with Postfix's smtp-sink on 127.0.0.1 as the receiving server (it accepts and drops mail):
#   - messages per second for 10,000 recipients (gen-corpus.py 1 10000), three rounds, alternating
#       smtp-source -d -s 16 -m 10000 -l SIZE -f weekly@example.org -t reader@example.test 127.0.0.1:PORT
#       feedpost --config feedpost.toml publish        ([smtp] concurrency = 16, fresh ledger each round)
#     SIZE = the mean size of feedpost's own messages (`feedpost preview ISSUE.md --out DIR`, or,
#     if that fails, one publish to the outbox folder); each rate, best and median of each, the
#     ratio feedpost/smtp-source (median and best; the goal is a median of 0.90 or more), and
#     feedpost's peak RSS (GNU time);
#   - feedpost's peak RSS and rate with 100,000 subscribers, beside smtp-source's rate for as many
#     messages (goal: at most 60 MiB, and far less growth than the list's).
# feedpost's rate = messages the sink counted during the run / wall time of the whole `publish`
# (which also builds the feeds, loads the subscriber list and queues it in the ledger); a run must
# deliver every message.
#
# Run:   scripts/bench-send.sh       (builds feedpost in release unless FEEDPOST is set)
# Exit:  0 when the goals are met, 1 when one is missed (after printing everything).
# Env:   FEEDPOST, FEEDPOST_SHARED, SINK_PORT (default 2526; another free port if busy),
#        RUNS=3, CONCURRENCY=16, BIG=100000 (0 skips the big run), SIZE=bytes (skip measuring),
#        STEP_TIMEOUT=1800 (s, any one run), BENCH_KEEP=1 keeps the temp dir.
# Needs: root to install the Debian packages `postfix` (only smtp-sink/smtp-source are used; the
#        mail system is neither configured nor started) and `time` when they are missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=10000
RUNS="${RUNS:-3}"
CONCURRENCY="${CONCURRENCY:-16}"
BIG="${BIG:-100000}"
ensure_postfix_tools
ensure_gnu_time
ensure_feedpost
make_tmp bench-send

PORT="$(free_port "${SINK_PORT:-2526}")"
start_sink "$PORT" "$TMP/sink"

# write_site DIR SUBSCRIBERS_TOML ISSUES_DIR [smtp|outbox]
write_site() {
  local dir="$1" subs="$2" issues="$3" mode="$4"
  mkdir -p "$dir"
  cp "$subs" "$dir/subscribers.toml"
  cat > "$dir/feedpost.toml" <<TOML
[site]
title = "SOFA Weekly"
base_url = "https://www.sofastack.tech/"
description = "SOFA WEEKLY | 每周精选，筛选每周精华问答，同步开源进展，欢迎留言互动。"
language = "zh-CN"
issues = "$issues"
feeds = "feeds"
subscribers = "subscribers.toml"

[mail]
from = "SOFA Weekly <weekly@example.org>"
TOML
  if [ "$mode" = smtp ]; then
    cat >> "$dir/feedpost.toml" <<TOML

[smtp]
host = "127.0.0.1"
port = $PORT
security = "none"
concurrency = $CONCURRENCY
TOML
  fi
}
fresh_ledger() { rm -f "$1"/*.sqlite "$1"/*.sqlite-wal "$1"/*.sqlite-shm "$1"/*.sqlite-journal; }

python3 "$GEN" 1 "$N" "$TMP/c10k" >/dev/null
ISSUE="$(ls "$TMP/c10k/issues"/*.md | tail -n 1)"
SITE="$TMP/site10k"
write_site "$SITE" "$TMP/c10k/subscribers.toml" "$TMP/c10k/issues" smtp

# --- SIZE: mean size of feedpost's messages ---------------------------------------------------
mean_eml() {  # mean byte size of DIR/**/*.eml, or nothing
  find "$1" -name '*.eml' -type f -printf '%s\n' 2>/dev/null \
    | awk '{s += $1; n++} END {if (n) printf "%d %d\n", s / n, n}'
}
if [ -z "${SIZE:-}" ]; then
  if timeout 300 "$FEEDPOST" --config "$SITE/feedpost.toml" preview "$ISSUE" --out "$TMP/preview" \
       >"$TMP/preview.log" 2>&1 && [ -n "$(mean_eml "$TMP/preview")" ]; then
    read -r SIZE cnt < <(mean_eml "$TMP/preview")
    echo "message size: mean $SIZE bytes over $cnt message(s) from \`feedpost preview\`"
  else
    echo "$_ME: \`feedpost preview\` gave no .eml; measuring with one publish to the outbox" >&2
    write_site "$TMP/outbox-site" "$TMP/c10k/subscribers.toml" "$TMP/c10k/issues" outbox
    WALL_LOG="$TMP/outbox.log" wall_secs "$FEEDPOST" --config "$TMP/outbox-site/feedpost.toml" publish
    [ -n "$(mean_eml "$TMP/outbox-site/outbox")" ] || die "no .eml in $TMP/outbox-site/outbox after publish"
    read -r SIZE cnt < <(mean_eml "$TMP/outbox-site/outbox")
    echo "message size: mean $SIZE bytes over $cnt message(s) in the outbox (publish took ${WALL}s)"
    rm -rf "$TMP/outbox-site"
  fi
fi

# --- alternating rounds --------------------------------------------------------------------
src_rates=(); fp_rates=(); fp_rss=()
run_feedpost() {  # run_feedpost SITE N LABEL: one fresh-ledger publish; sets RATE, RSS_KB
  local site="$1" n="$2" label="$3" before after got line
  fresh_ledger "$site"
  before="$(sink_count "$TMP/sink")"
  WALL_LOG="$TMP/$label.log" wall_secs "$FEEDPOST" --config "$site/feedpost.toml" publish
  wait_sink_count "$TMP/sink" $((before + n)) 10 || true
  after="$(sink_count "$TMP/sink")"
  got=$((after - before))
  line="$(grep -E '^sent [0-9]+' "$TMP/$label.log" | tail -n 1 || true)"
  [ "$got" = "$n" ] || die "$label: the sink received $got messages, expected $n (feedpost said: ${line:-nothing})"
  RATE=$(awk -v n="$got" -v t="$WALL" 'BEGIN { printf "%.0f", n / t }')
  echo "$label: feedpost  $got msgs in ${WALL}s = $RATE msg/s, peak RSS $RSS_KB KB  [${line:-no summary line}]"
}
for r in $(seq 1 "$RUNS"); do
  before="$(sink_count "$TMP/sink")"
  WALL_LOG="$TMP/source-$r.log" wall_secs /usr/sbin/smtp-source -d -s "$CONCURRENCY" -m "$N" -l "$SIZE" \
    -f weekly@example.org -t reader@example.test "127.0.0.1:$PORT"
  wait_sink_count "$TMP/sink" $((before + N)) 10 || die "round $r: smtp-source: the sink did not count $N messages"
  rate=$(awk -v n="$N" -v t="$WALL" 'BEGIN { printf "%.0f", n / t }')
  src_rates+=("$rate")
  echo "round $r: smtp-source $N msgs in ${WALL}s = $rate msg/s"
  run_feedpost "$SITE" "$N" "round $r"
  fp_rates+=("$RATE"); fp_rss+=("$RSS_KB")
done

round_ratios=()
for i in "${!src_rates[@]}"; do
  round_ratios+=("$(awk -v f="${fp_rates[$i]}" -v s="${src_rates[$i]}" 'BEGIN { printf "%.2f", f / s }')")
done
src_best=$(maxof "${src_rates[@]}"); src_med=$(median "${src_rates[@]}")
fp_best=$(maxof "${fp_rates[@]}");   fp_med=$(median "${fp_rates[@]}")
echo "smtp-source: best $src_best msg/s, median $src_med msg/s  (-s $CONCURRENCY, -l $SIZE)"
echo "feedpost:    best $fp_best msg/s, median $fp_med msg/s  (concurrency $CONCURRENCY)"
missed=0
awk -v fm="$fp_med" -v sm="$src_med" -v fb="$fp_best" -v sb="$src_best" 'BEGIN {
  r = fm / sm
  printf "ratio feedpost/smtp-source: median %.2f, best %.2f  (goal: median >= 0.90: %s)\n",
    r, fb / sb, (r >= 0.9 ? "met" : "NOT met")
  exit (r >= 0.9 ? 0 : 1) }' || missed=1
echo "ratio per round (each pair ran back to back): ${round_ratios[*]}"
rss10k=$(maxof "${fp_rss[@]}")
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "feedpost peak RSS, $N subscribers: $rss10k KB ($(mib "$rss10k"))"

# --- 100,000 subscribers -------------------------------------------------------------------
if [ "$BIG" -gt 0 ]; then
  python3 "$GEN" 1 "$BIG" "$TMP/cbig" >/dev/null
  write_site "$TMP/sitebig" "$TMP/cbig/subscribers.toml" "$TMP/cbig/issues" smtp
  before="$(sink_count "$TMP/sink")"
  WALL_LOG="$TMP/source-big.log" wall_secs /usr/sbin/smtp-source -d -s "$CONCURRENCY" -m "$BIG" -l "$SIZE" \
    -f weekly@example.org -t reader@example.test "127.0.0.1:$PORT"
  wait_sink_count "$TMP/sink" $((before + BIG)) 10 || die "smtp-source: the sink did not count $BIG messages"
  big_src=$(awk -v n="$BIG" -v t="$WALL" 'BEGIN { printf "%.0f", n / t }')
  echo "$BIG messages: smtp-source $BIG msgs in ${WALL}s = $big_src msg/s"
  run_feedpost "$TMP/sitebig" "$BIG" "$BIG subscribers"
  awk -v f="$RATE" -v s="$big_src" 'BEGIN { printf "ratio feedpost/smtp-source at %s: %.2f\n", "'"$BIG"'", f / s }'
  awk -v a="$rss10k" -v b="$RSS_KB" -v n="$N" -v m="$BIG" 'BEGIN {
    printf "feedpost peak RSS: %d subscribers %.1f MiB, %d subscribers %.1f MiB (x%.2f for x%d subscribers; goal <= 60 MiB: %s)\n",
      n, a / 1024, m, b / 1024, b / a, m / n, (b <= 60 * 1024 ? "met" : "NOT met")
    exit (b <= 60 * 1024 ? 0 : 1) }' || missed=1
fi
# A goal missed is the exit status, so a change that brings back a stall (Nagle's delayed ACK
# costs ~40 ms a message) or a list-sized allocation does not go unnoticed.
exit "$missed"
