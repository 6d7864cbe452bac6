#!/usr/bin/env bash
# bench-send.sh — how fast `feedpost publish` delivers over SMTP, against Postfix's smtp-source,
# unsigned and with DKIM.
#
# Measures, with Postfix's smtp-sink on 127.0.0.1 as the receiving server (it accepts and drops mail):
#   - messages per second for 10,000 recipients (gen-corpus.py 1 10000), three rounds, each
#     running back to back
#       smtp-source -d -s 16 -m 10000 -l SIZE -f weekly@example.org -t reader@example.test 127.0.0.1:PORT
#       $BASELINE publish      (another feedpost binary, e.g. main's, unsigned; when BASELINE is set)
#       feedpost publish       ([smtp] concurrency = 16, fresh ledger each round, unsigned)
#       feedpost publish       (the same with [dkim]: an RSA-2048 key made by `openssl genpkey`)
#     SIZE = the mean size of feedpost's own messages (`feedpost preview ISSUE.md --out DIR`, or,
#     if that fails, one publish to the outbox folder); each rate, best and median of each, the
#     ratios feedpost/smtp-source (goal: median 0.90 or more), DKIM/unsigned (goal: median 0.50
#     or more) and feedpost/baseline, and feedpost's peak RSS (GNU time);
#   - DKIM signing per core: `examples/sign_bench` (RSA-2048 signatures per core and per message
#     through the signing pool) beside `openssl speed rsa2048`;
#   - feedpost's peak RSS and rate with 100,000 subscribers, beside smtp-source's rate for as many
#     messages (goal: at most 60 MiB, and far less growth than the list's);
#   - scripts/bench-store.sh: the PostgreSQL store against the SQLite store, one and three
#     senders (goal: one PostgreSQL sender at least 0.80x SQLite); STORE_BENCH=skip skips it.
# feedpost's rate = messages the sink counted during the run / wall time of the whole `publish`
# (which also builds the feeds, loads the subscriber list and queues it in the ledger); a run must
# deliver every message. The machine's load average is printed before and after: other work on
# the machine lowers every rate, so compare figures of one run.
#
# Run:   scripts/bench-send.sh       (builds feedpost and sign_bench in release unless FEEDPOST
#                                     and SIGN_BENCH are set)
# Exit:  0 when the goals are met, 1 when one is missed (after printing everything).
# Env:   FEEDPOST, BASELINE (a feedpost binary to compare with), SIGN_BENCH (the sign_bench
#        example binary; SIGN_BENCH=skip skips it), FEEDPOST_SHARED, SINK_PORT (default 2526;
#        another free port if busy), RUNS=3, CONCURRENCY=16, BIG=100000 (0 skips the big run),
#        SIZE=bytes (skip measuring), STEP_TIMEOUT=1800 (s, any one run), BENCH_KEEP=1 keeps the
#        temp dir.
# Needs: root to install the Debian packages `postfix` (only smtp-sink/smtp-source are used; the
#        mail system is neither configured nor started), `time` and `openssl` when they are missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=10000
RUNS="${RUNS:-3}"
CONCURRENCY="${CONCURRENCY:-16}"
BIG="${BIG:-100000}"
ensure_postfix_tools
ensure_gnu_time
ensure_openssl
ensure_feedpost
ensure_sign_bench
if [ -n "${BASELINE:-}" ]; then
  [ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable"
fi
make_tmp bench-send
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

PORT="$(free_port "${SINK_PORT:-2526}")"
start_sink "$PORT" "$TMP/sink"

# write_site DIR SUBSCRIBERS_TOML ISSUES_DIR [smtp|dkim|outbox]
write_site() {
  local dir="$1" subs="$2" issues="$3" mode="$4"
  mkdir -p "$dir"
  cp "$subs" "$dir/subscribers.toml"
  site_toml "$issues" "$SOFA_DESCRIPTION" > "$dir/feedpost.toml"
  if [ "$mode" = smtp ] || [ "$mode" = dkim ]; then
    smtp_toml "$PORT" "$CONCURRENCY" >> "$dir/feedpost.toml"
  fi
  if [ "$mode" = dkim ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/dkim.pem" 2>/dev/null \
      || die "openssl genpkey failed"
    chmod 600 "$dir/dkim.pem"
    cat >> "$dir/feedpost.toml" <<TOML

[dkim]
domain = "example.org"
selector = "bench"
private_key = "dkim.pem"
TOML
  fi
}
fresh_ledger() { rm -f "$1"/*.sqlite "$1"/*.sqlite-wal "$1"/*.sqlite-shm "$1"/*.sqlite-journal; }

python3 "$GEN" 1 "$N" "$TMP/c10k" >/dev/null
ISSUE="$(ls "$TMP/c10k/issues"/*.md | tail -n 1)"
SITE="$TMP/site10k"
write_site "$SITE" "$TMP/c10k/subscribers.toml" "$TMP/c10k/issues" smtp
DKIM_SITE="$TMP/site10k-dkim"
write_site "$DKIM_SITE" "$TMP/c10k/subscribers.toml" "$TMP/c10k/issues" dkim

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
src_rates=(); fp_rates=(); fp_rss=(); dkim_rates=(); base_rates=()
run_feedpost() {  # run_feedpost BINARY SITE N LABEL: one fresh-ledger publish; sets RATE, RSS_KB
  local bin="$1" site="$2" n="$3" label="$4" before after got line
  fresh_ledger "$site"
  before="$(sink_count "$TMP/sink")"
  WALL_LOG="$TMP/$label.log" wall_secs "$bin" --config "$site/feedpost.toml" publish
  wait_sink_count "$TMP/sink" $((before + n)) 10 || true
  after="$(sink_count "$TMP/sink")"
  got=$((after - before))
  line="$(grep -E '^sent [0-9]+' "$TMP/$label.log" | tail -n 1 || true)"
  [ "$got" = "$n" ] || die "$label: the sink received $got messages, expected $n (feedpost said: ${line:-nothing})"
  RATE=$(awk -v n="$got" -v t="$WALL" 'BEGIN { printf "%.0f", n / t }')
  echo "$label: $got msgs in ${WALL}s = $RATE msg/s, peak RSS $RSS_KB KB, CPU ${CPU_SECS}s  [${line:-no summary line}]"
}
for r in $(seq 1 "$RUNS"); do
  before="$(sink_count "$TMP/sink")"
  WALL_LOG="$TMP/source-$r.log" wall_secs /usr/sbin/smtp-source -d -s "$CONCURRENCY" -m "$N" -l "$SIZE" \
    -f weekly@example.org -t reader@example.test "127.0.0.1:$PORT"
  wait_sink_count "$TMP/sink" $((before + N)) 10 || die "round $r: smtp-source: the sink did not count $N messages"
  rate=$(awk -v n="$N" -v t="$WALL" 'BEGIN { printf "%.0f", n / t }')
  src_rates+=("$rate")
  echo "round $r: smtp-source $N msgs in ${WALL}s = $rate msg/s"
  if [ -n "${BASELINE:-}" ]; then
    run_feedpost "$BASELINE" "$SITE" "$N" "round $r: baseline"
    base_rates+=("$RATE")
  fi
  run_feedpost "$FEEDPOST" "$SITE" "$N" "round $r: feedpost"
  fp_rates+=("$RATE"); fp_rss+=("$RSS_KB")
  run_feedpost "$FEEDPOST" "$DKIM_SITE" "$N" "round $r: feedpost DKIM RSA-2048"
  dkim_rates+=("$RATE")
done

round_ratios=()
for i in "${!src_rates[@]}"; do
  round_ratios+=("$(awk -v f="${fp_rates[$i]}" -v s="${src_rates[$i]}" 'BEGIN { printf "%.2f", f / s }')")
done
src_best=$(maxof "${src_rates[@]}"); src_med=$(median "${src_rates[@]}")
fp_best=$(maxof "${fp_rates[@]}");   fp_med=$(median "${fp_rates[@]}")
dkim_best=$(maxof "${dkim_rates[@]}"); dkim_med=$(median "${dkim_rates[@]}")
echo "smtp-source: best $src_best msg/s, median $src_med msg/s  (-s $CONCURRENCY, -l $SIZE)"
if [ -n "${BASELINE:-}" ]; then
  echo "baseline:    best $(maxof "${base_rates[@]}") msg/s, median $(median "${base_rates[@]}") msg/s  ($BASELINE, unsigned)"
fi
echo "feedpost:    best $fp_best msg/s, median $fp_med msg/s  (concurrency $CONCURRENCY, unsigned)"
echo "feedpost:    best $dkim_best msg/s, median $dkim_med msg/s  (DKIM RSA-2048)"
missed=0
awk -v fm="$fp_med" -v sm="$src_med" -v fb="$fp_best" -v sb="$src_best" 'BEGIN {
  r = fm / sm
  printf "ratio feedpost/smtp-source: median %.2f, best %.2f  (goal: median >= 0.90: %s)\n",
    r, fb / sb, (r >= 0.9 ? "met" : "NOT met")
  exit (r >= 0.9 ? 0 : 1) }' || missed=1
echo "ratio per round (each pair ran back to back): ${round_ratios[*]}"
awk -v dm="$dkim_med" -v fm="$fp_med" 'BEGIN {
  r = dm / fm
  printf "ratio DKIM RSA-2048/unsigned: median %.2f  (goal: >= 0.50: %s)\n", r, (r >= 0.5 ? "met" : "NOT met")
  exit (r >= 0.5 ? 0 : 1) }' || missed=1
if [ -n "${BASELINE:-}" ]; then
  awk -v fm="$fp_med" -v bm="$(median "${base_rates[@]}")" 'BEGIN {
    printf "ratio feedpost/baseline (unsigned): median %.2f\n", fm / bm }'
fi
rss10k=$(maxof "${fp_rss[@]}")
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "feedpost peak RSS, $N subscribers: $rss10k KB ($(mib "$rss10k"))"

# --- DKIM signing per core, beside openssl --------------------------------------------------
if [ "${SIGN_BENCH:-}" != skip ]; then
  echo "DKIM signing (examples/sign_bench 3; per core: wall-clock / CPU-time rates):"
  (cd "$REPO" && timeout "$STEP_TIMEOUT" "$SIGN_BENCH" 3) >"$TMP/sign_bench.log" 2>&1 \
    || { tail -n 20 "$TMP/sign_bench.log" >&2; die "sign_bench failed"; }
  grep -E '^(key|RSA-2048|Ed25519) ' "$TMP/sign_bench.log" | sed 's/^/  /'
  grep -A3 '^openssl speed' "$TMP/sign_bench.log" | sed 's/^/  /'
fi
echo "load average after the 10,000 rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

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
  run_feedpost "$FEEDPOST" "$TMP/sitebig" "$BIG" "$BIG subscribers"
  awk -v f="$RATE" -v s="$big_src" 'BEGIN { printf "ratio feedpost/smtp-source at %s: %.2f\n", "'"$BIG"'", f / s }'
  awk -v a="$rss10k" -v b="$RSS_KB" -v n="$N" -v m="$BIG" 'BEGIN {
    printf "feedpost peak RSS: %d subscribers %.1f MiB, %d subscribers %.1f MiB (x%.2f for x%d subscribers; goal <= 60 MiB: %s)\n",
      n, a / 1024, m, b / 1024, b / a, m / n, (b <= 60 * 1024 ? "met" : "NOT met")
    exit (b <= 60 * 1024 ? 0 : 1) }' || missed=1
fi
# --- the PostgreSQL store against the SQLite store ------------------------------------------
if [ "${STORE_BENCH:-}" != skip ]; then
  echo "--- scripts/bench-store.sh: PostgreSQL store vs SQLite store ---"
  FEEDPOST="$FEEDPOST" "$SCRIPT_DIR/bench-store.sh" || missed=1
fi
# A goal missed is the exit status, so a change that brings back a stall (Nagle's delayed ACK
# costs ~40 ms a message) or a list-sized allocation does not go unnoticed.
exit "$missed"
