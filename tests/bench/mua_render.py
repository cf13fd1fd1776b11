"""Step 6 on hostile mail: time and memory of ``mua read`` and ``mua list`` (issue 15).

    python -m tests.bench.mua_render

Each case runs in a fresh interpreter of its own: the message is built first, then VmHWM is
reset to the current RSS (``/proc/self/clear_refs``), then the message is parsed and rendered
as ``mua read`` does (``render.render_message``) and as ``mua list`` does (``render.list_row``).
The figures are the wall time of that and the peak RSS it added. Goal: under 1 s and 100 MB
for any header, "well under 1 s" for 5,000 parts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

MB = 1024 * 1024
GOAL_SECONDS = 1.0
GOAL_MB = 100


def many_words() -> bytes:
    """A 1 MB Subject of 40,000 RFC 2047 encoded words."""
    return b"From: a@x\nSubject: " + b"=?utf-8?q?caf=C3=A9?= " * 40_000 + b"\n\nbody\n"


def folded() -> bytes:
    """A 3 MB Subject folded over 150,000 lines."""
    return b"From: a@x\nSubject: start" + b"\n folded line of text" * 150_000 + b"\n\nbody\n"


def many_parts() -> bytes:
    """A message of 5,000 parts: a text body and 4,999 named attachments."""
    parts = b"".join(
        b"--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment;"
        b' filename="f%d.bin"\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n' % i
        for i in range(4_999)
    )
    return (b"From: a@x\nSubject: many\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\n"
            b"the body\n" + parts + b"--B--\n")


def hostile_content_type() -> bytes:
    """A 1 MB Content-Type of encoded words and parameters (parsed for every part)."""
    return (b"From: a@x\nContent-Type: text/plain; charset=utf-8;"
            + b' x="=?utf-8?q?caf=C3=A9?="; ' * 35_000 + b"\n\nbody\n")


CASES: dict[str, Callable[[], bytes]] = {
    "1 MB Subject, 40,000 encoded words": many_words,
    "3 MB folded Subject": folded,
    "5,000 parts": many_parts,
    "1 MB Content-Type": hostile_content_type,
}


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure(name: str) -> dict[str, float]:
    """Run one case in this process (the child's side)."""
    from mua import render

    data = CASES[name]()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS (Linux)
    before = _status("VmRSS")
    started = time.perf_counter()
    msg = render.parse(data)
    shown = render.render_message(msg)
    read_s = time.perf_counter() - started
    render.list_row(1, render.parse(data), len(data))
    total_s = time.perf_counter() - started
    return {
        "message_mb": round(len(data) / MB, 2),
        "read_s": round(read_s, 3),
        "read_and_list_s": round(total_s, 3),
        "peak_mb": round((_status("VmHWM") - before) / MB, 1),
        "shown_chars": len(shown),
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(measure(sys.argv[2])))
        return 0
    missed = 0
    print(f"mua render on hostile mail (goal: under {GOAL_SECONDS:.0f} s and {GOAL_MB} MB each)")
    for name in CASES:
        child = subprocess.run([sys.executable, "-m", "tests.bench.mua_render", "--case", name],
                               capture_output=True, text=True, timeout=300, check=True)
        r = json.loads(child.stdout)
        met = r["read_and_list_s"] < GOAL_SECONDS and r["peak_mb"] < GOAL_MB
        missed += not met
        print(f"  {name:<38} {r['message_mb']:>5} MB message: read {r['read_s'] * 1000:7.0f} ms,"
              f" read+list {r['read_and_list_s'] * 1000:7.0f} ms, peak +{r['peak_mb']:6.1f} MB"
              f"  {'met' if met else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
