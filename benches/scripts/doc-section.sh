#!/usr/bin/env bash
# Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in FILE with
# standard input (a script's markdown table), as `--update-doc` does for compare/failover.
# Fails, leaving FILE alone, when the markers are missing or the input is empty.
# Usage: benches/scripts/put-cpu.sh | benches/scripts/doc-section.sh put-cpu BENCHMARKS.md
set -euo pipefail
name="$1" file="$2"
python3 -c '
import sys
name, path = sys.argv[1:]
body = sys.stdin.read()
if not body.strip():
    sys.exit(f"doc-section: no input for {name}; {path} left unchanged")
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(path).read()
if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
    sys.exit(f"doc-section: {path} needs exactly one {begin} ... {end}")
head, rest = text.split(begin)
_, tail = rest.split(end)
open(path, "w").write(f"{head}{begin}\n{body.rstrip()}\n{end}{tail}")
' "$name" "$file"
