#!/usr/bin/env python3
"""The shell blocks of markdown files, for scripts/doctest.

    doctest_blocks.py OUT_DIR FILE...

Every fenced block whose language is sh, bash, shell or console must be preceded (on the line
before its fence, blank lines allowed) by a marker:

    <!-- doctest: NAME -->             run by scripts/doctest's doc_NAME, which checks what the
                                        text around it promises
    <!-- doctest: skip (REASON) -->     not run; REASON says why (it shows in the test's output)

Writes each block's text (its fence's indentation removed) to OUT_DIR/NNN.sh and one line per
block to stdout: NNN<TAB>FILE:LINE<TAB>NAME (or skip)<TAB>REASON. Exit 1, naming file and line,
for a shell block without a marker, a marker without a block after it, a skip without a reason,
or a name used twice.
"""

import os
import re
import sys

SHELL = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SKIP = re.compile(r"^skip\s*\((?P<reason>.+)\)$")


def blocks(path):
    """(line, lang, marker, marker_line, text) for every fenced block of `path`."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    marker, marker_line = None, None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            if marker is not None:
                yield (marker_line, None, marker, marker_line, None)
            marker, marker_line = m.group("body"), i + 1
            i += 1
            continue
        f = FENCE.match(line)
        if not f:
            if line.strip() and marker is not None:
                # Prose between a marker and the next block: the marker belongs to no block.
                yield (marker_line, None, marker, marker_line, None)
                marker = None
            i += 1
            continue
        indent, fence, lang = f.group("indent"), f.group("fence"), f.group("lang").lower()
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        yield (start, lang, marker, marker_line, "\n".join(body) + "\n")
        marker = None


def main():
    out, files = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    errors, rows, seen = [], [], {}
    n = 0
    for path in files:
        for line, lang, marker, marker_line, text in blocks(path):
            where = f"{path}:{line}"
            if lang is None:
                errors.append(f"{path}:{marker_line}: a doctest marker with no block right after it")
                continue
            if lang not in SHELL:
                if marker is not None:
                    errors.append(f"{where}: a doctest marker on a {lang or 'plain'} block (only shell blocks run)")
                continue
            if marker is None:
                errors.append(f"{where}: a shell block without <!-- doctest: NAME --> or <!-- doctest: skip (reason) -->")
                continue
            s = SKIP.match(marker)
            if marker.startswith("skip") and not s:
                errors.append(f"{where}: a skip needs its reason: <!-- doctest: skip (why) -->")
                continue
            n += 1
            ident = f"{n:03d}"
            if s:
                rows.append((ident, where, "skip", s.group("reason").strip()))
            elif NAME.match(marker):
                if marker in seen:
                    errors.append(f"{where}: doctest name {marker} also used at {seen[marker]}")
                    continue
                seen[marker] = where
                rows.append((ident, where, marker, ""))
            else:
                errors.append(f"{where}: doctest marker '{marker}' is neither a name nor skip (reason)")
                continue
            with open(os.path.join(out, f"{ident}.sh"), "w", encoding="utf-8") as f:
                f.write(text)
    for e in errors:
        print(f"doctest: {e}", file=sys.stderr)
    for r in rows:
        print("\t".join(r))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
