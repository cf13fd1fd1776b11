"""A private network of Linux network namespaces for the lab tests (the ``lab_net`` fixture).

A test gets its own hosts: one namespace per host, each with an ``eth0`` (a veth
pair) plugged into a bridge that lives in a namespace of its own, so nothing is added to the
machine's own network and traffic never leaves namespaces the test made. Names are unique per
run; teardown kills every process the test started and deletes every namespace.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)


def _must(*args: str) -> None:
    result = _ip(*args)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Process:
    """A process in a namespace whose stdout and stderr lines are collected as they come."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path,
                 log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self.log = log_dir / f"{name}.log"
        self.popen = subprocess.Popen(self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True)
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in ("stdout", "stderr")]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: str) -> None:
        pipe = getattr(self.popen, stream)
        with self.log.open("a", encoding="utf-8") as log:
            for raw in iter(pipe.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(f"{stream[3:]}: {text}\n")
                log.flush()
                with self._changed:
                    self.lines[stream].append(text)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, stream: str = "stdout", timeout: float = 30.0,
                 count: int = 1) -> list[str]:
        """Wait (bounded) until ``count`` lines of ``stream`` match ``pattern``; return them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines[stream] if regex.search(line)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None
                                 and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(
                        f"{self.name}: no {count} line(s) matching {pattern!r} on {stream} "
                        f"within {timeout:.0f}s (exit code {self.popen.poll()}); output:\n"
                        + self.transcript())
                self._changed.wait(min(left, 0.5))

    def transcript(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        for reader in self._readers:
            reader.join(5)


@dataclass
class LabNetwork:
    """Hosts on one bridged /24, each in its own network namespace."""

    tag: str
    prefix_len: int
    work: Path
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> namespace
    addresses: dict[str, str] = field(default_factory=dict)  # host name -> address
    processes: list[Process] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def _add_namespace(self, name: str) -> None:
        _must("netns", "add", name)
        self.namespaces.append(name)
        _must("-n", name, "link", "set", "lo", "up")

    def start_switch(self) -> None:
        self._add_namespace(self.switch)
        _must("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _must("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name: str, address: str) -> str:
        """A new namespace for ``name`` with ``address`` on eth0, plugged into the bridge."""
        ns = f"{self.tag}-{len(self.hosts)}"
        self._add_namespace(ns)
        port = f"p{len(self.hosts)}"
        _must("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
              "netns", ns)
        _must("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _must("-n", ns, "addr", "add", f"{address}/{self.prefix_len}", "dev", "eth0")
        _must("-n", ns, "link", "set", "eth0", "up")
        self.hosts[name] = ns
        self.addresses[name] = address
        return ns

    def start(self, host: str, argv: Sequence[str], env: Mapping[str, str],
              name: str | None = None) -> Process:
        process = Process(name or host, [IP, "netns", "exec", self.hosts[host], *argv], env,
                          self.work, self.work)
        self.processes.append(process)
        return process

    def run(self, host: str, argv: Sequence[str], env: Mapping[str, str],
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([IP, "netns", "exec", self.hosts[host], *argv], env=dict(env),
                              cwd=self.work, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def close(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:  # keep cleaning up
                pass
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns)
