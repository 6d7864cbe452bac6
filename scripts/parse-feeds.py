#!/usr/bin/env python3
"""parse-feeds.py — check that feed readers can parse feedpost's feeds.

Measures: whether each feed parses cleanly in feedparser (the parser behind many
feed readers) — RSS and Atom (*.xml) — and whether each JSON Feed (*.json) has the
keys JSON Feed 1.1 requires (version, title, items; each item id and content_html or
content_text).

Usage:  scripts/parse-feeds.py DIR_OR_FILE...      (dirs are searched recursively)
        needs `pip install feedparser`
Output: per feed "FILE: bozo=0 entries=N", or "FILE: bozo=1 EXCEPTION";
        then "feeds: K checked, B bozo".
Exit:   0 all clean; 1 any bozo (or no feed found); 2 usage.
"""
import json
import os
import sys


def collect(args):
    files = []
    for arg in args:
        if os.path.isdir(arg):
            for root, dirs, names in os.walk(arg):
                dirs.sort()
                for n in sorted(names):
                    if n.endswith((".xml", ".json")):
                        files.append(os.path.join(root, n))
        elif os.path.isfile(arg):
            files.append(arg)
        else:
            print("error: no such file or directory: %s" % arg, file=sys.stderr)
            sys.exit(2)
    return files


def check_json(path):
    """Returns (entries, problem or None)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return 0, "%s: %s" % (type(e).__name__, e)
    if not isinstance(doc, dict):
        return 0, "top level is not an object"
    missing = [k for k in ("version", "title", "items") if k not in doc]
    if missing:
        return 0, "missing required key(s): %s" % ", ".join(missing)
    if not str(doc["version"]).startswith("https://jsonfeed.org/version/"):
        return 0, "version is not a JSON Feed version URL: %r" % doc["version"]
    items = doc["items"]
    if not isinstance(items, list):
        return 0, "items is not an array"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return len(items), "items[%d] is not an object" % i
        if "id" not in item:
            return len(items), "items[%d] has no id" % i
        if "content_html" not in item and "content_text" not in item:
            return len(items), "items[%d] (id %r) has neither content_html nor content_text" % (i, item["id"])
    return len(items), None


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    files = collect(sys.argv[1:])
    if not files:
        print("feeds: 0 checked, 0 bozo (no .xml or .json feed found)")
        sys.exit(1)
    try:
        import feedparser
    except ImportError:
        feedparser = None
    bozo = 0
    for path in files:
        if path.endswith(".json"):
            n, problem = check_json(path)
            if problem:
                bozo += 1
                print("%s: bozo=1 %s" % (path, problem))
            else:
                print("%s: bozo=0 entries=%d" % (path, n))
            continue
        if feedparser is None:
            print("error: feedparser is not installed (pip install feedparser)", file=sys.stderr)
            sys.exit(2)
        d = feedparser.parse(path)
        if d.bozo:
            bozo += 1
            exc = d.get("bozo_exception")
            print("%s: bozo=1 %s: %s" % (path, type(exc).__name__, exc))
        elif not d.version:
            bozo += 1
            print("%s: bozo=1 not recognised as RSS or Atom" % path)
        else:
            print("%s: bozo=0 entries=%d" % (path, len(d.entries)))
    print("feeds: %d checked, %d bozo" % (len(files), bozo))
    sys.exit(1 if bozo else 0)


if __name__ == "__main__":
    main()
