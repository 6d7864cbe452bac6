#!/usr/bin/env bash
# bench-store.sh — messages/s of `feedpost publish` with the PostgreSQL store against the SQLite
# store, in the same run: one sender on each, then three senders sharing one issue on PostgreSQL.
#
# Receiving server: Postfix's smtp-sink on 127.0.0.1. PostgreSQL: the Debian package's server,
# initdb into the temp dir (as the `postgres` user when run as root), on a free loopback port,
# default durability (fsync and synchronous_commit on, as in production). For N recipients
# (gen-corpus.py 1 N), RUNS rounds, each with a fresh ledger / fresh database:
#   sqlite 1   feedpost publish, the SQLite ledger
#   pg 1       feedpost publish, [store] url = the PostgreSQL database
#   pg 3       three `feedpost publish` started together on the same issue and database; the
#              wall time runs until the last ends
# rate = messages the sink counted / wall time of the whole publish (site build, list loading,
# queueing included); every run must deliver exactly N messages. Goal: median pg 1 / sqlite 1
# >= 0.80. Other work on the machine lowers every rate: compare the figures of one run.
#
# Run:   scripts/bench-store.sh     (also run by scripts/bench-send.sh unless STORE_BENCH=skip)
# Exit:  0 when the goal is met, 1 when missed.
# Env:   FEEDPOST (binary; default: cargo build --release), N=10000, RUNS=3, CONCURRENCY=16,
#        SINK_PORT, STEP_TIMEOUT, BENCH_KEEP=1.
# Needs: root to install the Debian packages `postgresql` and `postfix` when missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N="${N:-10000}"
RUNS="${RUNS:-3}"
CONCURRENCY="${CONCURRENCY:-16}"
ensure_postfix_tools
ensure_gnu_time
ensure_feedpost
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "$_ME: installing Debian package 'postgresql'..." >&2
  _apt_install postgresql
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
make_tmp bench-store
chmod 755 "$TMP"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

PORT="$(free_port "${SINK_PORT:-2527}")"
start_sink "$PORT" "$TMP/sink"

# PostgreSQL in $TMP/pg, as an unprivileged user when root (initdb refuses root).
AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); fi
mkdir -p "$TMP/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$TMP/pg"
PGPORT_="$(free_port)"
"${AS[@]}" "$PGBIN/initdb" -D "$TMP/pg/data" -U feedpost --auth=trust -E UTF8 --locale=C >"$TMP/initdb.log" 2>&1 \
  || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
"${AS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/server.log" -w -t 60 \
  -o "-p $PGPORT_ -k $TMP/pg -c listen_addresses=127.0.0.1" start >/dev/null \
  || { cat "$TMP/pg/server.log" >&2; die "pg_ctl start failed"; }
stop_pg() { "${AS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m fast -w stop >/dev/null 2>&1 || true; }
trap 'stop_pg; _cleanup' EXIT
DB=0
fresh_db() {  # fresh_db: sets URL to a new empty database
  DB=$((DB + 1))
  "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT_" -U feedpost "b$DB"
  URL="postgres://feedpost@127.0.0.1:$PGPORT_/b$DB"
}

python3 "$GEN" 1 "$N" "$TMP/corpus" >/dev/null
SITE="$TMP/site"
mkdir -p "$SITE"
cp "$TMP/corpus/subscribers.toml" "$SITE/subscribers.toml"
config() {  # config [URL]: writes the site's feedpost.toml, with a [store] table for URL
  { site_toml "$TMP/corpus/issues"; smtp_toml "$PORT" "$CONCURRENCY"; } > "$SITE/feedpost.toml"
  if [ -n "${1:-}" ]; then printf '\n[store]\nurl = "%s"\n' "$1" >> "$SITE/feedpost.toml"; fi
  rm -f "$SITE"/*.sqlite "$SITE"/*.sqlite-wal "$SITE"/*.sqlite-shm
}

# run SENDERS LABEL: SENDERS publishes at once; sets RATE.
run() {
  local senders="$1" label="$2" before after got t0 t1 i pids=() rc=0
  before="$(sink_count "$TMP/sink")"
  t0=$(date +%s%N)
  for i in $(seq 1 "$senders"); do
    timeout "$STEP_TIMEOUT" "$FEEDPOST" --config "$SITE/feedpost.toml" publish >"$TMP/$label-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=$?; done
  t1=$(date +%s%N)
  [ "$rc" = 0 ] || { tail -n 20 "$TMP/$label"-*.log >&2; die "$label: a publish failed (exit $rc)"; }
  wait_sink_count "$TMP/sink" $((before + N)) 10 || true
  after="$(sink_count "$TMP/sink")"
  got=$((after - before))
  [ "$got" = "$N" ] || die "$label: the sink received $got messages, expected $N"
  RATE=$(awk -v n="$got" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }')
  local split
  split="$(cat "$TMP/$label"-*.log | sed -n 's/^sent \([0-9]*\),.*/\1/p' | paste -sd+ -)"
  echo "$label: $got msgs, $RATE msg/s  (sent per sender: $split)"
}

sq=(); p1=(); p3=()
for r in $(seq 1 "$RUNS"); do
  config;             run 1 "round-$r-sqlite-1"; sq+=("$RATE")
  fresh_db; config "$URL"; run 1 "round-$r-pg-1"; p1+=("$RATE")
  fresh_db; config "$URL"
  # The tables first, so the three senders time the sending, not one migration each.
  "$FEEDPOST" --config "$SITE/feedpost.toml" store migrate >/dev/null
  run 3 "round-$r-pg-3"; p3+=("$RATE")
done
echo "sqlite, 1 sender:     median $(median "${sq[@]}") msg/s, best $(maxof "${sq[@]}")  (${sq[*]})"
echo "postgresql, 1 sender: median $(median "${p1[@]}") msg/s, best $(maxof "${p1[@]}")  (${p1[*]})"
echo "postgresql, 3 senders: median $(median "${p3[@]}") msg/s, best $(maxof "${p3[@]}")  (${p3[*]})"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v p="$(median "${p1[@]}")" -v s="$(median "${sq[@]}")" 'BEGIN {
  r = p / s
  printf "ratio postgresql/sqlite, 1 sender: median %.2f  (goal >= 0.80: %s)\n", r, (r >= 0.8 ? "met" : "NOT met")
  exit (r >= 0.8 ? 0 : 1) }'
