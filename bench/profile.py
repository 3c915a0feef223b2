"""Optional sampling profiles of the operator with py-spy (`pip install py-spy`; attaching needs root or
ptrace rights), and a plain-text summary of py-spy's collapsed stacks."""
from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PREFIX = re.compile(r"^.*(site-packages/|/operator/(?=certmint/)|lib/python\d+\.\d+/)")


def frame_name(frame: str) -> str:
    """'reconcile (certmint/controller/core.py:123)' -> 'reconcile (certmint/controller/core.py)'."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = _PREFIX.sub("", m.group("file"))
    return f"{m.group('func')} ({path})"


def summarise(collapsed: str, top: int = 15) -> dict:
    """From py-spy's raw format ('frame;frame;frame COUNT' per line, root first): the functions with the
    most samples on top of the stack (self) and anywhere in it (total), as fractions of all samples."""
    self_counts: Counter = Counter()
    total_counts: Counter = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += n
        self_counts[frames[-1]] += n
        for f in set(frames):
            total_counts[f] += n
    if not samples:
        return {"samples": 0, "self": [], "total": []}
    return {"samples": samples,
            "self": [(f, round(c / samples, 4)) for f, c in self_counts.most_common(top)],
            "total": [(f, round(c / samples, 4)) for f, c in total_counts.most_common(top)]}


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def record(pid: int, out: Path | None, rate: int = 100) -> Iterator[dict]:
    """Sample pid while the block runs; afterwards the yielded dict holds the summary (or the reason
    there is none). With out None this does nothing."""
    result: dict = {}
    if out is None:
        yield result
        return
    exe = py_spy()
    if exe is None:
        result["error"] = "py-spy not found: pip install py-spy"
        yield result
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                             "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield result
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if out.exists():
            result.update(summarise(out.read_text(errors="replace")), file=str(out))
        else:
            result["error"] = f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"
