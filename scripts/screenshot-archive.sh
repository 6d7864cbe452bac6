#!/usr/bin/env bash
# screenshot-archive.sh — docs/archive.png, the README's picture of the web archive: the example
# site in this repository (feedpost.toml, issues/) built with its base_url on a local port,
# served as a static folder, and the newest issue's page taken by headless Chromium.
#
# Run:   scripts/screenshot-archive.sh [OUT.png]   (builds feedpost in release unless FEEDPOST is set)
# Needs: Debian chromium (/usr/bin/chromium or $CHROMIUM), python3 (its http.server).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

OUT="${1:-$REPO/docs/archive.png}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || die "chromium not found (Debian: apt-get install chromium)"
ensure_feedpost
make_tmp screenshot-archive
PORT="$(free_port 8765)"

cp -r "$REPO/issues" "$REPO/subscribers.example.toml" "$TMP/"
sed "s|^base_url = .*|base_url = \"http://127.0.0.1:$PORT/\"|" "$REPO/feedpost.toml" >"$TMP/feedpost.toml"
FEEDPOST_NOW=2026-01-01T00:00:00Z "$FEEDPOST" --config "$TMP/feedpost.toml" -q build >/dev/null

python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$TMP/feeds" >/dev/null 2>&1 &
_CLEANUP_PIDS+=($!)
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$PORT/" >/dev/null && break
  sleep 0.1
done

NEWEST="$(find "$TMP/feeds/issues" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | tail -1)"
[ -n "$NEWEST" ] || die "the build wrote no issue page"
PAGE="http://127.0.0.1:$PORT/issues/$NEWEST/"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$TMP/chromium" --hide-scrollbars --window-size=1000,760 \
  --screenshot="$OUT" "$PAGE" 2>/dev/null
[ -s "$OUT" ] || die "no screenshot written"
echo "$OUT"
