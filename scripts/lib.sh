# shellcheck shell=bash disable=SC2034
# lib.sh — helpers shared by scripts/*.sh (sourced, not run). Bash, expects `set -euo pipefail`.
#
# Sets SCRIPT_DIR, REPO, SHARED (env FEEDPOST_SHARED, default ../../shared from scripts/: CI clones
# the repo with shared/ beside it) and GEN (shared/tools/gen-corpus.py). Functions:
#   die MSG                       print "NAME: MSG" to stderr, exit 1
#   make_tmp NAME [PARENT]        TMP=fresh temp dir (in PARENT, default $TMPDIR or /tmp), removed
#                                 on exit (BENCH_KEEP=1 keeps it)
#   ensure_gnu_time               /usr/bin/time (Debian package `time`)
#   ensure_postfix_tools          /usr/sbin/smtp-sink and smtp-source (Debian package `postfix`),
#                                 installed without configuring or starting the mail system
#   ensure_openssl                the `openssl` program (Debian package `openssl`)
#   ensure_feedpost               FEEDPOST=binary (env FEEDPOST, else `cargo build --profile
#                                 $PROFILE`, PROFILE=release unless set, in $CARGO_TARGET_DIR
#                                 when set)
#   ensure_sign_bench             SIGN_BENCH=binary (env SIGN_BENCH, else `cargo build --release
#                                 --example sign_bench`); SIGN_BENCH=skip leaves it unset
#   free_port [PREFERRED]         print PREFERRED if free on 127.0.0.1, else a free port
#   start_sink PORT DIR [ARGS..]  smtp-sink on 127.0.0.1:PORT with running counters in DIR/sink.out;
#                                 waits (bounded) until it accepts; killed on exit
#   sink_count DIR                messages the sink has received so far (its last "mesg=N")
#   wait_sink_count DIR N SECS    wait until the sink has counted N messages, at most SECS seconds
#   site_toml [ISSUES [DESCRIPTION]]
#                                 print the [site] and [mail] tables of a bench site ("SOFA Weekly",
#                                 zh-CN, From weekly@example.org); with ISSUES: issues = ISSUES,
#                                 feeds = "feeds", subscribers = "subscribers.toml"; with
#                                 DESCRIPTION: its description line (SOFA_DESCRIPTION: the seeds')
#   smtp_toml PORT CONCURRENCY    print a blank line and an [smtp] table: 127.0.0.1:PORT, no TLS
#   wall_secs CMD...              run CMD, set WALL=seconds (ns clock), RSS_KB=peak RSS and
#                                 CPU_SECS=user+system CPU seconds (GNU time);
#                                 CMD's stdout+stderr go to $WALL_LOG (default /dev/null); fails if CMD fails

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$SCRIPT_DIR")"
SHARED="${FEEDPOST_SHARED:-$SCRIPT_DIR/../../shared}"
GEN="$SHARED/tools/gen-corpus.py"
STEP_TIMEOUT="${STEP_TIMEOUT:-1800}"   # bound, in seconds, on any one measured command
_ME="$(basename "$0")"
_CLEANUP_PIDS=()
TMP=""

die() { echo "$_ME: $*" >&2; exit 1; }

_cleanup() {
  local pid
  for pid in "${_CLEANUP_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${_CLEANUP_PIDS[@]}"; do
    timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "$_ME: kept $TMP" >&2; else rm -rf "$TMP"; fi
  fi
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

make_tmp() {  # make_tmp NAME [PARENT]
  TMP="$(mktemp -d "${2:-${TMPDIR:-/tmp}}/feedpost-$1.XXXXXX")"
}

[ -f "$GEN" ] || die "gen-corpus.py not found at $GEN (set FEEDPOST_SHARED to the shared/ folder)"

_apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to install Debian package(s) $* (or install them first)"
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { timeout 900 apt-get update -q >/dev/null \
         && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "$@" >/dev/null; } \
    || die "apt-get install $* failed"
}

ensure_gnu_time() {
  [ -x /usr/bin/time ] || { echo "$_ME: installing Debian package 'time'..." >&2; _apt_install time; }
}

ensure_postfix_tools() {
  if [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; then return; fi
  echo "$_ME: installing Debian package 'postfix' for smtp-sink/smtp-source..." >&2
  local was_running=0
  if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then was_running=1; fi
  # "No configuration": install the binaries without setting up (or starting) a mail system.
  [ "$(id -u)" = 0 ] && echo "postfix postfix/main_mailer_type select No configuration" \
    | debconf-set-selections 2>/dev/null || true
  _apt_install postfix
  # We only need the test binaries; if the install started the daemon, stop it again.
  if [ "$was_running" = 0 ] && postfix status >/dev/null 2>&1; then
    echo "$_ME: the postfix install started the mail daemon; stopping it" >&2
    timeout 60 postfix stop >/dev/null 2>&1 || true
  fi
  [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || die "smtp-sink/smtp-source missing after install"
}

ensure_openssl() {
  command -v openssl >/dev/null || { echo "$_ME: installing Debian package 'openssl'..." >&2; _apt_install openssl; }
}

ensure_sign_bench() {
  [ "${SIGN_BENCH:-}" = skip ] && return
  if [ -z "${SIGN_BENCH:-}" ]; then
    command -v cargo >/dev/null || die "cargo not found; set SIGN_BENCH to the sign_bench binary (or skip)"
    echo "$_ME: building examples/sign_bench (cargo build --release --example sign_bench)..." >&2
    (cd "$REPO" && timeout 3600 cargo build --release --quiet --example sign_bench) \
      || die "cargo build --release --example sign_bench failed"
    SIGN_BENCH="$(cd "$REPO" && cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/examples/sign_bench"
  fi
  [ -x "$SIGN_BENCH" ] || die "sign_bench binary not found at $SIGN_BENCH"
  SIGN_BENCH="$(cd "$(dirname "$SIGN_BENCH")" && pwd)/$(basename "$SIGN_BENCH")"
}

ensure_feedpost() {
  if [ -z "${FEEDPOST:-}" ]; then
    command -v cargo >/dev/null || die "cargo not found; set FEEDPOST to a feedpost binary"
    local profile="${PROFILE:-release}"
    echo "$_ME: building feedpost (cargo build --profile $profile)..." >&2
    (cd "$REPO" && timeout 3600 cargo build --profile "$profile" --quiet) \
      || die "cargo build --profile $profile failed"
    FEEDPOST="$(cd "$REPO" && cd "${CARGO_TARGET_DIR:-target}" && pwd)/$profile/feedpost"
  fi
  [ -x "$FEEDPOST" ] || die "feedpost binary not found at $FEEDPOST"
  FEEDPOST="$(cd "$(dirname "$FEEDPOST")" && pwd)/$(basename "$FEEDPOST")"
}

_port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

free_port() {
  local p="${1:-}"
  if [ -n "$p" ] && ! _port_busy "$p"; then echo "$p"; return; fi
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_sink() {
  local port="$1" dir="$2"; shift 2
  local user=()
  [ "$(id -u)" = 0 ] && user=(-u nobody)   # smtp-sink refuses to run as root without -u
  mkdir -p "$dir"
  # -c: running counters "sess=N quit=N mesg=N" on stdout; backlog 1024.
  timeout "${SINK_TIMEOUT:-7200}" /usr/sbin/smtp-sink -c "${user[@]}" "$@" "127.0.0.1:$port" 1024 \
    >"$dir/sink.out" 2>"$dir/sink.err" &
  SINK_PID=$!
  _CLEANUP_PIDS+=("$SINK_PID")
  local i
  for i in $(seq 1 100); do
    if _port_busy "$port"; then return 0; fi
    kill -0 "$SINK_PID" 2>/dev/null || { cat "$dir/sink.err" >&2; die "smtp-sink exited at start"; }
    sleep 0.1
  done
  die "smtp-sink did not listen on 127.0.0.1:$port within 10 s"
}

sink_count() {
  local n
  n=$(tr '\r' '\n' <"$1/sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
  echo "${n:-0}"
}

wait_sink_count() {
  local dir="$1" want="$2" secs="$3"
  for _ in $(seq 1 $((secs * 10))); do
    [ "$(sink_count "$dir")" -ge "$want" ] && return 0
    sleep 0.1
  done
  return 1
}

wall_secs() {
  local t0 t1 rc=0
  ensure_gnu_time
  t0=$(date +%s%N)
  /usr/bin/time -f '%M %U %S' -o "$TMP/.time.out" timeout "$STEP_TIMEOUT" "$@" >"${WALL_LOG:-/dev/null}" 2>&1 || rc=$?
  t1=$(date +%s%N)
  if [ "$rc" != 0 ]; then
    echo "$_ME: FAILED (exit $rc): $*" >&2
    [ -f "${WALL_LOG:-/dev/null}" ] && tail -n 30 "$WALL_LOG" >&2
    return "$rc"
  fi
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  read -r RSS_KB CPU_U CPU_S < <(tail -n 1 "$TMP/.time.out")
  CPU_SECS=$(awk -v u="$CPU_U" -v s="$CPU_S" 'BEGIN { printf "%.2f", u + s }')
}

SOFA_DESCRIPTION="SOFA WEEKLY | 每周精选，筛选每周精华问答，同步开源进展，欢迎留言互动。"

site_toml() {  # site_toml [ISSUES [DESCRIPTION]]
  printf '[site]\ntitle = "SOFA Weekly"\nbase_url = "https://www.sofastack.tech/"\n'
  if [ -n "${2:-}" ]; then printf 'description = "%s"\n' "$2"; fi
  printf 'language = "zh-CN"\n'
  if [ -n "${1:-}" ]; then
    printf 'issues = "%s"\nfeeds = "feeds"\nsubscribers = "subscribers.toml"\n' "$1"
  fi
  printf '\n[mail]\nfrom = "SOFA Weekly <weekly@example.org>"\n'
}

smtp_toml() {  # smtp_toml PORT CONCURRENCY
  printf '\n[smtp]\nhost = "127.0.0.1"\nport = %s\nsecurity = "none"\nconcurrency = %s\n' "$1" "$2"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }
