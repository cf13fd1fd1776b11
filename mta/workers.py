"""Extra worker processes for one domain's MX and POP3 ports (steps 4 and 5 under load).

One Python event loop tops out at about what aiosmtpd can parse; a class of fifty hammering one
server needs more. With ``workers = N`` in the config, ``mta serve`` starts N - 1 more processes
of itself that listen on the same MX, POP3 and POP3S ports (``SO_REUSEPORT``: the kernel spreads
new connections over the processes, Linux and the BSDs). They share the SQLite database, which
already serialises writers across processes (each commit still comes before its ``250``) and
holds the POP3 maildrop lock. Submission and the relay worker stay in the first process only:
the relay must be the queue's one reader.

A worker that dies is started again (at most ``MAX_RESTARTS`` a minute); stopping the server
stops its workers, and a worker whose first process is gone (even SIGKILLed) stops too: it
watches the pipe the first process holds open on its standard input.

Events: when the first process's bus has listeners as the workers start (``--trace``, an event
history), each worker runs with ``--forward-events`` and writes its events, one JSON object
(``Event.to_dict``) a line, on the standard output the first process already reads; the first
process publishes them (``events.from_dict``) on its own bus, so one consumer sees every
session. A worker never waits for the pipe: past ``FORWARD_BUFFER`` unsent octets it drops
events and counts them, as a slow subscriber would. Without listeners nothing is forwarded and
the workers' buses stay inactive (no event is built).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from mta import events
from mta.config import Config, ConfigError
from mta.events import Bus

log = logging.getLogger("labmail.workers")

READY = "mta: worker ready"
MAX_RESTARTS = 5
START_TIMEOUT = 30.0
# the listeners worker processes share; submission stays with the relay in the first process
SHARED = ("mx", "pop3", "pop3s")
FORWARD_BUFFER = 4 * 1024 * 1024  # unsent event octets a worker holds before dropping


async def forward_events(bus: Bus) -> asyncio.Task[None]:
    """In a worker: write every event of ``bus`` to standard output as JSON lines, without
    ever blocking the event loop (a task; the transport buffers, then events are dropped)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(1, "wb", 0))
    subscription = bus.subscribe()

    async def run() -> None:
        async for event in subscription:
            if transport.is_closing():
                return
            if transport.get_write_buffer_size() > FORWARD_BUFFER:
                bus.dropped += 1
                continue
            transport.write(events.to_json(event) + b"\n")

    return loop.create_task(run(), name="forward-events")


async def receive_events(stream: asyncio.StreamReader, bus: Bus) -> None:
    """In the first process: publish the events a worker writes until its output ends."""
    while line := await stream.readline():
        try:
            event = events.from_json(line)
        except (ValueError, KeyError, TypeError):
            log.warning("worker wrote something that is not an event: %r", line[:200])
            continue
        bus.publish(event)


def check_supported(config: Config) -> None:
    """Refuse ``workers > 1`` where ports cannot be shared."""
    import socket

    if config.workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(f"{config.source}: 'workers' above 1 needs SO_REUSEPORT, which this "
                          "system does not have")


async def watch_parent(gone: asyncio.Event) -> None:
    """Set ``gone`` when standard input (the first process's pipe) reaches end of file."""

    class Watcher(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            gone.set()

        def eof_received(self) -> bool:
            gone.set()
            return False

    await asyncio.get_running_loop().connect_read_pipe(Watcher, sys.stdin)


class WorkerPool:
    """``count`` worker processes running ``mta serve --worker`` on the bound ports."""

    def __init__(self, config_path: Path, config: Config, ports: dict[str, int],
                 count: int, bus: Bus | None = None) -> None:
        self.config_path = config_path
        self.count = count
        self.bus = bus  # where the workers' events go; None: they send none
        self.env = dict(os.environ)
        for name in SHARED:
            listener = getattr(config.listeners, name)
            value = f"{listener.host}:{ports[name]}" if name in ports else "off"
            self.env[f"LABMAIL_LISTENERS_{name.upper()}"] = value
        for name in ("submission", "submissions"):
            self.env[f"LABMAIL_LISTENERS_{name.upper()}"] = "off"
        self.env["LABMAIL_WORKERS"] = "1"
        self.processes: list[asyncio.subprocess.Process] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._receivers: set[asyncio.Task[None]] = set()
        self._restarts: list[float] = []
        self._closing = False

    async def start(self) -> None:
        """Start every worker and wait until each is listening."""
        self.processes = list(await asyncio.gather(*(self._spawn() for _ in range(self.count))))
        self._watchers = [asyncio.create_task(self._watch(i)) for i in range(self.count)]
        log.info("%d worker process(es) started: %s", self.count,
                 ", ".join(str(p.pid) for p in self.processes))

    async def _spawn(self) -> asyncio.subprocess.Process:
        forward = ["--forward-events"] if self.bus is not None and self.bus.active else []
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mta", "--config", str(self.config_path), "serve", "--worker",
            *forward, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"worker {proc.pid} exited while starting")
                    if line.decode(errors="replace").strip() == READY:
                        break
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if forward and self.bus is not None:
            task = asyncio.create_task(receive_events(proc.stdout, self.bus))
            self._receivers.add(task)
            task.add_done_callback(self._receivers.discard)
        return proc

    async def _watch(self, index: int) -> None:
        while not self._closing:
            proc = self.processes[index]
            code = await proc.wait()
            if self._closing:
                return
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < 60] + [now]
            if len(self._restarts) > MAX_RESTARTS:
                log.error("worker %d exited (%s) too often; not starting it again", proc.pid,
                          code)
                return
            log.warning("worker %d exited (%s); starting another", proc.pid, code)
            try:
                self.processes[index] = await self._spawn()
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.error("could not start a worker: %s", exc)
                return

    async def close(self, grace: float = 15.0) -> None:
        """SIGTERM every worker (each finishes its transactions), then wait for them."""
        self._closing = True
        for task in self._watchers:
            task.cancel()
        for proc in self.processes:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await asyncio.gather(*self._receivers, return_exceptions=True)
