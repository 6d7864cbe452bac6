#!/usr/bin/env bash
# check-email.sh — the figures of "an email that reads well on every screen and in every client"
# for the five real seeds in tests/fixtures/seeds (or the issues given as arguments).
#
# For each issue, `feedpost preview` writes the message a sample recipient gets; then:
#   width375    layout width in headless Chromium at a 375 px viewport (must be 375)
#   caniemail   @jsx-email/doiuse-email over gmail.*, outlook.*, apple-mail.*, yahoo.*: distinct
#               errors other than the allowed ones (<body>, role, and the progressive
#               enhancements @media, prefers-color-scheme, overflow-wrap/word-break, the hidden
#               preheader's display:none) must be 0; distinct warnings at most 74 (the count
#               before the redesign)
#   text        the plain-text part: URLs split across lines (0), lines over 78 columns that are
#               not a lone URL (0), `**`/`###` not in the source's code (0)
#   spam        SpamAssassin score (`spamassassin -t -L`, no network tests), at most 0.5
#   html        size of the HTML part in bytes, decoded and as sent (quoted-printable), both under
#               102 KB (Gmail clips a message above)
#   dark        with prefers-color-scheme: dark, the content background's luminance (dark:
#               under 0.1) and the lowest text contrast in the card (at least 4.5)
# Prints one line per issue and exits 1 if any figure misses its mark.
#
# Run:   scripts/check-email.sh [ISSUE.md...]   (builds feedpost in debug unless FEEDPOST is set)
# Needs: node + npm (installs scripts/email-check/node_modules on first run), Debian chromium
#        (/usr/bin/chromium or $CHROMIUM), spamassassin, python3.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$SCRIPT_DIR")"
die() { echo "check-email.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (Debian: apt-get install nodejs npm)"
command -v spamassassin >/dev/null || die "spamassassin not found (Debian: apt-get install spamassassin)"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || die "Chromium not found (Debian: apt-get install chromium)"
if [ ! -d "$SCRIPT_DIR/email-check/node_modules" ]; then
  (cd "$SCRIPT_DIR/email-check" && npm ci --no-audit --no-fund --silent) || die "npm ci failed"
fi
if [ -z "${FEEDPOST:-}" ]; then
  (cd "$REPO" && cargo build --quiet) || die "cargo build failed"
  FEEDPOST="$REPO/target/debug/feedpost"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/feedpost-check-email.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/site/issues" "$TMP/out"
if [ $# -eq 0 ]; then set -- "$REPO"/tests/fixtures/seeds/issues/*.md; fi
for issue in "$@"; do cp "$issue" "$TMP/site/issues/"; done
cat > "$TMP/site/feedpost.toml" <<'TOML'
[site]
title = "SOFA Weekly"
base_url = "https://www.sofastack.tech/"
description = "SOFA WEEKLY | 每周精选，筛选每周精华问答，同步开源进展，欢迎留言互动。"
language = "zh-CN"

[mail]
from = "SOFA Weekly <weekly@sofastack.tech>"
unsubscribe_url = "https://www.sofastack.tech/unsubscribe?token={token}"
postal_address = "SOFAStack, 1 Example Road, Hangzhou, China"
TOML
for issue in "$TMP"/site/issues/*.md; do
  FEEDPOST_NOW=2024-01-01T00:00:00Z "$FEEDPOST" --config "$TMP/site/feedpost.toml" -q \
    preview "$issue" --out "$TMP/out" --no-screenshots >/dev/null
done

(cd "$SCRIPT_DIR/email-check" && node check.mjs "$TMP"/out/*.html) > "$TMP/browser.jsonl"
for eml in "$TMP"/out/*.eml; do
  spamassassin -t -L < "$eml" 2>/dev/null | sed -n 's/^Content analysis details: *(\(-\{0,1\}[0-9.]*\) points.*/\1/p' \
    > "${eml%.eml}.spam"
done

python3 - "$TMP" <<'PY'
import email, email.policy, html, json, pathlib, re, sys, unicodedata
tmp = pathlib.Path(sys.argv[1])
browser = {j["file"]: j for j in map(json.loads, (tmp / "browser.jsonl").read_text().splitlines())}
URL = re.compile(r"https?://[^\s<>\"]+")

def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in s)

ok = True
print(f"{'issue':<28} {'width375':>8} {'cie-err':>7} {'cie-warn':>8} {'url-split':>9} {'long':>4} {'md':>3} {'spam':>5} {'html':>7} {'html-qp':>7} {'dark-L':>6} {'contrast':>8}")
for out in sorted((tmp / "out").glob("*.html")):
    name = out.stem
    b = browser[out.name]
    page = out.read_text()
    text = (tmp / "out" / f"{name}.txt").read_text()
    source = (tmp / "site" / "issues" / f"{name}.md").read_text()
    hrefs = {html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)}
    split = [u for u in URL.findall(text) if u.rstrip(".,;:)") not in hrefs and u not in hrefs]
    long = [l for l in text.splitlines()
            if width(l) > 78 and not re.fullmatch(r"(\[\d+\] )?https?://\S+", l.strip())]
    code = "".join(re.findall(r"```.*?```|`[^`\n]*`", source, re.S))
    markdown = [m for m in ("**", "###") if m in text and m not in code]
    spam = float((tmp / "out" / f"{name}.spam").read_text().strip() or "nan")
    size = len(page.encode())
    message = email.message_from_bytes((tmp / "out" / f"{name}.eml").read_bytes(), policy=email.policy.default)
    sent = len(message.get_body(("html",)).get_payload(decode=False).encode())
    cie = b["caniemail"]
    dark = b["dark"]
    checks = [b["width375"] == 375, not cie["disallowed"], cie["warnings"] <= 74, not split,
              not long, not markdown, spam <= 0.5, size < 102 * 1024, sent < 102 * 1024,
              dark["luminance"] < 0.1, dark["lowestContrast"] >= 4.5]
    ok &= all(checks)
    print(f"{name:<28} {b['width375']:>8} {len(cie['disallowed']):>7} {cie['warnings']:>8} {len(split):>9} "
          f"{len(long):>4} {len(markdown):>3} {spam:>5} {size:>7} {sent:>7} {dark['luminance']:>6} {dark['lowestContrast']:>8}"
          + ("" if all(checks) else "  FAIL"))
    for e in cie["disallowed"]: print("   caniemail:", e)
    for u in split: print("   URL split:", u)
    for l in long: print("   long line:", l)
    for m in markdown: print("   Markdown left in the text part:", m)
print("check-email: OK" if ok else "check-email: FAILED")
sys.exit(0 if ok else 1)
PY
