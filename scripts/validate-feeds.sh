#!/usr/bin/env bash
# validate-feeds.sh — check RSS/Atom feeds with the W3C Feed Validation Service, offline.
#
# Measures: feed conformance as the online W3C validator (validator.w3.org/feed) judges it,
# at its default "AA" level: errors (must) and warnings (should); "info" notes are ignored.
#
# Usage:   scripts/validate-feeds.sh DIR_OR_FILE...
#          (directories are searched recursively for *.xml)
# Output:  per feed  "FILE: N errors, M warnings" and one indented line per message,
#          then      "feeds: K checked, E errors, W warnings".
# Exit:    0 all clean; 1 any error or warning (or no feed found); 2 usage / validator missing.
#
# Needs a checkout of github.com/w3c/feedvalidator (not vendored, never committed here) at
# $FEEDVALIDATOR (default /opt/feedvalidator) and `pip install lxml html5lib rdflib`.
#
# How it is run: we do not call its src/demo.py (whose text output does not say which
# message is an error and which a warning, and which judges a file against its file:// URL);
# instead an embedded Python driver imports the validator's package from $FEEDVALIDATOR/src
# and calls feedvalidator.validateStream(file, firstOccurrenceOnly=1, base=SELF) where SELF is
# the feed's own rel="self" link (as if the online service had fetched the feed from its
# published URL), filters with feedvalidator.compatibility.AA, and sorts events into
# logging.Error / logging.Warning. Offline: validateStream reads the local file only, and the
# driver makes every socket connect and DNS lookup fail at once (the validator's only other
# network use is a DNS lookup of some e-mail domains, which then reports "unknown host").
set -euo pipefail

FEEDVALIDATOR="${FEEDVALIDATOR:-/opt/feedvalidator}"

if [ $# -eq 0 ]; then
  echo "usage: $0 DIR_OR_FILE..." >&2
  exit 2
fi

if [ ! -f "$FEEDVALIDATOR/src/feedvalidator/__init__.py" ]; then
  cat >&2 <<MSG
error: the W3C feed validator is not at $FEEDVALIDATOR (set FEEDVALIDATOR to its checkout).
To get it (this script downloads nothing itself): obtain a snapshot of the public repository
github.com/w3c/feedvalidator (in an agent session: the search tool's \`fetch github:w3c/feedvalidator\`,
which gives a git dir GITDIR), then
    mkdir -p /opt/feedvalidator
    git --git-dir=GITDIR archive HEAD | tar -x -C /opt/feedvalidator
    pip install lxml html5lib rdflib
Keep it outside this repository; do not commit its code.
MSG
  exit 2
fi

files=()
for arg in "$@"; do
  if [ -d "$arg" ]; then
    while IFS= read -r -d '' f; do files+=("$f"); done \
      < <(find "$arg" -type f -name '*.xml' -print0 | sort -z)
  elif [ -f "$arg" ]; then
    files+=("$arg")
  else
    echo "error: no such file or directory: $arg" >&2
    exit 2
  fi
done

if [ ${#files[@]} -eq 0 ]; then
  echo "feeds: 0 checked, 0 errors, 0 warnings (no .xml feed found in: $*)"
  exit 1
fi

# One Python process for all feeds; bounded in time.
exec timeout 600 python3 - "$FEEDVALIDATOR/src" "${files[@]}" <<'PY'
import os, re, socket, sys

src, files = sys.argv[1], sys.argv[2:]

# --- offline guard: no connection, no name lookup leaves this process -------------------
def _offline(*a, **k):
    raise OSError("feed validation runs offline: network access refused")
socket.socket.connect = _offline
socket.socket.connect_ex = _offline
socket.create_connection = _offline
socket.gethostbyname = _offline
socket.gethostbyname_ex = _offline
socket.getaddrinfo = _offline

sys.path.insert(0, src)
os.environ.setdefault("LANGUAGE", "en")
import feedvalidator
from feedvalidator import compatibility
from feedvalidator.logging import Error, Warning
from feedvalidator.formatter.text_plain import Formatter

SELF_RE = [
    re.compile(rb'<(?:[A-Za-z0-9_]+:)?link\b[^>]*\brel=["\']self["\'][^>]*\bhref=["\']([^"\']+)["\']', re.S),
    re.compile(rb'<(?:[A-Za-z0-9_]+:)?link\b[^>]*\bhref=["\']([^"\']+)["\'][^>]*\brel=["\']self["\']', re.S),
]

def self_url(path):
    with open(path, "rb") as f:
        head = f.read(65536)
    for rx in SELF_RE:
        m = rx.search(head)
        if m:
            return m.group(1).decode("utf-8", "replace").replace("&amp;", "&")
    return "file://" + os.path.abspath(path)

total_e = total_w = 0
for path in files:
    base = self_url(path)
    try:
        with open(path, "rb") as f:
            events = feedvalidator.validateStream(f, firstOccurrenceOnly=1, base=base)["loggedEvents"]
    except feedvalidator.logging.ValidationFailure as vf:
        events = [vf.event]
    events = compatibility.AA(events)
    out = Formatter(events)
    errs = [out.format(e) for e in events if isinstance(e, Error)]
    warns = [out.format(e) for e in events if isinstance(e, Warning) and not isinstance(e, Error)]
    total_e += len(errs)
    total_w += len(warns)
    print("%s: %d errors, %d warnings" % (path, len(errs), len(warns)))
    for m in errs:
        print("  error: " + m)
    for m in warns:
        print("  warning: " + m)

print("feeds: %d checked, %d errors, %d warnings" % (len(files), total_e, total_w))
sys.exit(1 if (total_e or total_w) else 0)
PY
