"""Summaries of py-spy's collapsed stacks (`--profile DIR`): the functions where a process
spends its on-CPU samples, inclusive (the function or anything it calls) and self."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    found = FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    path = found.group("file")
    parts = Path(path).parts
    for marker in ("site-packages", "main", "work"):
        if marker in parts:
            parts = parts[parts.index(marker) + 1 :]
            break
    return f"{found.group('func')} ({'/'.join(parts[-3:])})"


def summarize(path: Path, top: int = 25) -> tuple[int, list[tuple[str, float, float]]]:
    """(total samples, [(function, inclusive %, self %)]) by inclusive share."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f]
        # py-spy's first frame may be the thread name ("process 123:..."); keep functions
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    rows = [(f, 100 * c / total, 100 * own[f] / total) for f, c in inclusive.most_common(top)]
    return total, rows


def report(path: Path, top: int = 25) -> str:
    total, rows = summarize(path, top)
    lines = [f"{path.name}: {total} samples", f"{'incl %':>7} {'self %':>7}  function"]
    lines += [f"{inc:7.1f} {slf:7.1f}  {f}" for f, inc, slf in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(report(Path(arg), 40))
        print()
