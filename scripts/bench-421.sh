#!/usr/bin/env bash
# bench-421.sh — a server that closes every connection with a 421 after 50 messages must not slow
# the whole send: only the connection told so backs off (issue 8, item 13).
#
# Sends one issue to 1,000 subscribers (gen-corpus.py 1 1000) with `feedpost publish` ([smtp]
# concurrency 8, a fresh ledger each run) through the fault-injecting sink of the shared tools
# (capture_smtp.py, aiosmtpd), RUNS rounds alternating:
#   fault-free      capture_smtp.py --out DIR
#   421 every 50    capture_smtp.py --out DIR --drop-after 50 --drop-scope connection --drop-mode 421
# and prints each run's wall time, the median of each, and the ratio (goal: at most 2.0). Every run
# must deliver all 1,000 messages, each once.
#
# Run:   scripts/bench-421.sh       (builds feedpost in release unless FEEDPOST is set)
# Exit:  0 when the ratio of the medians is at most 2.0, 1 otherwise (after printing everything).
# Env:   FEEDPOST, FEEDPOST_SHARED, RUNS=3, N=1000, CONCURRENCY=8, BENCH_KEEP=1 keeps the temp dir.
# Needs: python3 with aiosmtpd (for capture_smtp.py).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

RUNS="${RUNS:-3}"
N="${N:-1000}"
CONCURRENCY="${CONCURRENCY:-8}"
CAPTURE="$SHARED/tools/capture_smtp.py"
[ -f "$CAPTURE" ] || die "capture_smtp.py not found at $CAPTURE (set FEEDPOST_SHARED)"
python3 -c 'import aiosmtpd' 2>/dev/null || die "python3 module aiosmtpd is missing (pip install aiosmtpd)"
ensure_feedpost
make_tmp bench-421

python3 "$GEN" 1 "$N" "$TMP/corpus" >/dev/null
PORT="$(free_port 2527)"
SITE="$TMP/site"
mkdir -p "$SITE"
cp "$TMP/corpus/subscribers.toml" "$SITE/subscribers.toml"
{ site_toml "$TMP/corpus/issues"; smtp_toml "$PORT" "$CONCURRENCY"; } >"$SITE/feedpost.toml"
"$FEEDPOST" --config "$SITE/feedpost.toml" build >/dev/null 2>&1 || die "feedpost build failed"

# run_once LABEL CAPTURE_ARGS... — prints the wall seconds of one publish; checks delivery.
run_once() {
  local label="$1"; shift
  local out="$TMP/caught-$label-$RANDOM"
  rm -f "$SITE"/feedpost.sqlite*
  python3 "$CAPTURE" --port "$PORT" --out "$out" "$@" >"$out.log" 2>&1 &
  local pid=$!
  _CLEANUP_PIDS+=("$pid")
  local i
  for i in $(seq 1 100); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then break; fi
    sleep 0.1
  done
  local start end
  start=$(date +%s%N)
  timeout "$STEP_TIMEOUT" "$FEEDPOST" --config "$SITE/feedpost.toml" -q publish >"$out.stdout" 2>&1 \
    || { cat "$out.stdout" >&2; die "$label: publish failed"; }
  end=$(date +%s%N)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local got distinct
  got=$(find "$out" -name '*.json' | wc -l)
  distinct=$(python3 - "$out" <<'PY'
import glob, json, os, sys
seen = set()
for path in glob.glob(os.path.join(sys.argv[1], "*.json")):
    with open(path) as f:
        seen.update(r.lower() for r in json.load(f)["rcpt_tos"])
print(len(seen))
PY
)
  [ "$got" -ge "$N" ] && [ "$distinct" = "$N" ] \
    || die "$label: the sink holds $got messages for $distinct recipients, expected $N"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f\n", (e - s) / 1e9 }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "feedpost publish to $N subscribers, concurrency $CONCURRENCY, through capture_smtp.py; $RUNS rounds"
echo "machine load before: $(cut -d' ' -f1-3 /proc/loadavg)"
CLEAN=(); FAULTY=()
for r in $(seq 1 "$RUNS"); do
  c=$(run_once clean)
  f=$(run_once 421 --drop-after 50 --drop-scope connection --drop-mode 421)
  CLEAN+=("$c"); FAULTY+=("$f")
  printf 'round %d: fault-free %6.2f s   421 after every 50 per connection %6.2f s\n' "$r" "$c" "$f"
done
MC=$(printf '%s\n' "${CLEAN[@]}" | median)
MF=$(printf '%s\n' "${FAULTY[@]}" | median)
RATIO=$(awk -v c="$MC" -v f="$MF" 'BEGIN { printf "%.2f", f / c }')
echo "median: fault-free ${MC} s, 421 after every 50 messages per connection ${MF} s, ratio ${RATIO} (goal: at most 2.0)"
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v r="$RATIO" 'BEGIN { exit !(r <= 2.0) }'
