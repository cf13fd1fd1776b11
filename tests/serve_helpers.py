"""Start ``python -m mta serve`` as a real process and learn its ports from its stdout."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"(\w+) listening on [\d.]+:(\d+)")
WORKERS = "more worker process(es)"


def start_serve(config_path: Path, *, listeners: Collection[str] = ("mx",),
                workers: bool = False, env: Mapping[str, str] | None = None,
                stderr: int | IO[Any] = subprocess.DEVNULL,
                timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """``mta --config config_path serve``: (process, {listener: port}) once every listener in
    ``listeners`` reported "listening on" (and, with ``workers``, the worker pool started).
    Bounded by ``timeout``; the process is killed if it does not get there."""
    proc = subprocess.Popen([sys.executable, "-m", "mta", "--config", str(config_path), "serve"],
                            stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT,
                            env=dict(env) if env is not None else None)
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    said, pending, pool_started = "", b"", not workers
    deadline = time.monotonic() + timeout
    try:
        while not (set(listeners) <= ports.keys() and pool_started):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"mta serve did not report {sorted(listeners)}: {said!r}"
            if not select.select([proc.stdout], [], [], remaining)[0]:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"mta serve exited ({proc.wait(10)}): {said!r}"
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                said += line + "\n"
                match = LISTENING.search(line)
                if match:
                    ports[match.group(1)] = int(match.group(2))
                pool_started = pool_started or WORKERS in line
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, ports
