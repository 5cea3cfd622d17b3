"""BENCHMARKS.md is written by several benchmark scripts, each owning one '## ' section: the
engine's speed (make bench), the kernels (make bench-kernels), the daemon (make bench-server),
compression (make bench-compress). replace_section() swaps one section for new text and leaves
the others as they are; the file is written to a temporary name and renamed into place."""

import os

HEADER = ("# Benchmarks\n\n"
          "Written by the `make bench*` targets (tools/bench/); do not edit by hand. Each section "
          "says which command produced it, on which machine, when, and under what load. "
          "Benchmarks are not tests.\n\n")


def replace_section(out, heading, text):
    """Replaces the section starting with the line `heading` (up to the next '## ' heading) by
    text, which must start with that heading; appends it when absent."""
    old = ""
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            old = f.read()
    if not old.startswith("# "):
        old = HEADER + old
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == heading), None)
    text = text.rstrip("\n") + "\n"
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines)
                                                else "")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(out + ".tmp", out)
