"""labmail benchmarks: one command, a table on stdout, figures in a JSON file.

    python -m tests.bench              # full run (a few minutes on 2 cores)
    python -m tests.bench --quick      # smoke run, < 60 s (CI)
    python tests/bench/run.py --only mx --profile prof/

Sections: ``mx`` (MX acceptance vs aiosmtpd's no-op ceiling and Postfix accepting and
delivering: tests/bench/postfix_mta.py), ``e2e`` (submission -> relay -> mailbox, when labmail
has a submission listener), ``pop3`` (retrieval, STAT/LIST on a big mailbox), ``memory`` (peak
RSS at c50 and for one 20 MB message), ``http`` (the HTTP listener's cost to the MX, API
latency on a big mailbox: tests/bench/http_bench.py).

Every server runs in a subprocess of its own; baselines are measured in the same run,
alternating A B A B so a noisy machine's drift hits both. Everything talks to 127.0.0.1,
every loop is bounded in count and time, and every subprocess is killed on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
from report import print_tables, verdicts  # noqa: E402

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
MB = 1024 * 1024


# -- server subprocesses ------------------------------------------------------------------------


class ServerProcess:
    """One benchmark server (tests/bench/servers.py) in a subprocess; stop() or kill() it."""

    live: set[ServerProcess] = set()

    def __init__(self, kind: str, args: list[str], log_path: Path) -> None:
        command = [sys.executable, str(HERE / "servers.py"), kind, *args]
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        ServerProcess.live.add(self)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self._next(STARTUP_TIMEOUT)
        if not self.ready or not self.ready.get("ready"):
            self.kill()
            raise RuntimeError(f"{kind} server did not start; see {log_path}")
        self.pid: int = self.ready["pid"]
        self.ports: dict[str, int] = self.ready["ports"]
        self.final: dict[str, Any] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith("{"):
                return json.loads(line)
        return None

    def status(self) -> dict[str, int]:
        """VmRSS/VmHWM of the server, read from /proc by the parent."""
        out = {}
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
        return out

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/PID/clear_refs``)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as fh:
            fh.write("5")

    def ask(self, command: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send one stdin command (``status``, ``count``) and read its JSON answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._next(timeout) or {}

    def stop(self) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.final = self._next(STOP_TIMEOUT) or {}
            self.proc.wait(STOP_TIMEOUT)
        except (subprocess.TimeoutExpired, OSError):
            pass
        self.kill()
        return self.final

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        ServerProcess.live.discard(self)
        self.log.close()

    @classmethod
    def kill_all(cls) -> None:
        for server in list(cls.live):
            server.kill()


@contextmanager
def server(kind: str, args: list[str], log_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(kind, args, log_path)
    try:
        yield proc
    finally:
        proc.stop()


# -- settings -----------------------------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    rounds: int
    mx_counts: dict[int, int]
    warmup: int
    pop3_retrieve: int
    pop3_big: int
    big_message: int
    e2e_count: int
    client: str
    smtp_source: str | None
    work: Path
    profile: Path | None
    loop: str
    log: str
    deadline: float = 300.0
    notes: list[str] = field(default_factory=list)


def settings(args: argparse.Namespace, work: Path) -> Settings:
    smtp_source = loadgen.find_smtp_source() if args.client in ("auto", "smtp-source") else None
    if args.client == "smtp-source" and smtp_source is None:
        raise SystemExit("smtp-source not found (Debian: apt-get install postfix)")
    client = "smtp-source" if smtp_source else "asyncio"
    if args.quick:
        return Settings(
            True,
            args.rounds or 1,
            {1: 100, 10: 200, 50: 300},
            20,
            200,
            2000,
            20 * MB,
            100,
            client,
            smtp_source,
            work,
            args.profile,
            args.loop,
            args.server_log,
        )
    return Settings(
        False,
        args.rounds or 3,
        {1: 1500, 10: 3000, 50: 4000},
        50,
        1000,
        10_000,
        20 * MB,
        1000,
        client,
        smtp_source,
        work,
        args.profile,
        args.loop,
        args.server_log,
    )


# -- MX acceptance ------------------------------------------------------------------------------


def load(s: Settings, port: int, count: int, concurrency: int) -> dict[str, Any]:
    if s.smtp_source:
        return loadgen.run_smtp_source(s.smtp_source, port, count, concurrency, s.deadline)
    return loadgen.run_asyncio_client(port, count, concurrency, s.deadline)


# labmail's MX in one process ("mx"), the same with a subscriber consuming every bus event
# ("mxsub", issue 12), and with a second worker process on the same port ("mx2",
# `workers = 2`): the no-op baseline is one event loop, the ceiling of one process.
KINDS = ("noop", "mx", "mxsub", "mx2")
MX_KINDS = ("mx", "mxsub", "mx2")


def server_args(s: Settings, kind: str, run_dir: Path, extra: list[str] | None = None) -> list[str]:
    args = ["--loop", s.loop]
    if kind in MX_KINDS:
        args += ["--dir", str(run_dir), "--log", s.log]
    if kind == "mx2":
        args += ["--workers", "2"]
    if kind == "mxsub":
        args += ["--subscribe"]
    return args + (extra or [])


def mx_summary(runs: list[dict[str, Any]], concurrencies: list[int]) -> dict[str, Any]:
    """Medians per kind and concurrency, and the ratios round by round (A B A B pairs)."""
    summary = {}
    for concurrency in concurrencies:
        rates = {
            kind: [
                r["msg_per_s"]
                for r in runs
                if r["kind"] == kind and r["concurrency"] == concurrency
            ]
            for kind in KINDS
        }
        noop, mx = statistics.median(rates["noop"]), statistics.median(rates["mx"])
        mx2 = statistics.median(rates["mx2"])
        pairs = [m / n for n, m in zip(rates["noop"], rates["mx"], strict=True) if n]
        pairs2 = [m / n for n, m in zip(rates["noop"], rates["mx2"], strict=True) if n]
        watched = [w / m for m, w in zip(rates["mx"], rates["mxsub"], strict=True) if m]
        summary[str(concurrency)] = {
            "noop_msg_per_s": round(noop, 1),
            "labmail_msg_per_s": round(mx, 1),
            "ratio": round(mx / noop, 3) if noop else None,
            "ratio_per_round": [round(p, 3) for p in pairs],
            "labmail_2workers_msg_per_s": round(mx2, 1),
            "ratio_2workers": round(mx2 / noop, 3) if noop else None,
            "ratio_2workers_per_round": [round(p, 3) for p in pairs2],
            "labmail_subscribed_msg_per_s": round(statistics.median(rates["mxsub"]), 1),
            "ratio_subscribed": round(statistics.median(watched), 3) if watched else None,
            "ratio_subscribed_per_round": [round(p, 3) for p in watched],
            "all_ok": all(r["ok"] for r in runs if r["concurrency"] == concurrency),
        }
    return summary


def mx_run(s: Settings, kind: str, concurrency: int, count: int, round_: int, say: Any
           ) -> dict[str, Any]:
    """One measured run of ``kind`` (KINDS) on a fresh server, after a warm-up."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-c{concurrency}-", dir=s.work))
    extra = []
    if s.profile and kind == "mx" and round_ == 0 and concurrency == max(s.mx_counts):
        s.profile.mkdir(parents=True, exist_ok=True)
        extra = ["--profile", str(s.profile / f"mx-c{concurrency}.prof")]
    with server(
        "noop" if kind == "noop" else "mx", server_args(s, kind, run_dir, extra),
        s.work / f"{kind}.log",
    ) as proc:
        port = proc.ports["smtp"]
        warm = load(s, port, s.warmup, min(concurrency, s.warmup))
        proc.reset_peak()
        result = load(s, port, count, concurrency)
        mem = proc.status()
    final = proc.final
    expected = count + warm["sent"]
    ok = not result["errors"] and final.get("messages") == expected
    rate = count / result["seconds"] if result["seconds"] else 0.0
    run = {"kind": kind, "concurrency": concurrency, "round": round_ + 1, "messages": count,
           "seconds": round(result["seconds"], 4), "msg_per_s": round(rate, 1), "ok": ok,
           "server_count": final.get("messages"), "expected": expected,
           "peak_rss_load": mem.get("VmHWM"), "errors": result["errors"][:3]}
    if kind != "noop":
        run["commits"] = final.get("commits")
    say(
        f"  mx c{concurrency:<3} round {round_ + 1} {kind:5} {rate:8.1f} msg/s"
        + ("" if ok else f"  FAILED {result['errors'][:1]} count={final.get('messages')}/"
           f"{expected}")
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return run


def bench_mx(s: Settings, say: Any) -> dict[str, Any]:
    """N ~2 KB messages, a connection each, at c = 1, 10, 50; no-op vs labmail, A B A B; and
    Postfix accept-and-deliver at c10 and c50 when it can run here (not in --quick)."""
    import postfix_mta  # tests/bench/postfix_mta.py

    master = postfix_mta.installed() if not s.quick else None
    if not master and not s.quick:
        say("  Postfix cannot run here (not installed, or not root): no deliver baseline")
    runs: list[dict[str, Any]] = []
    postfix_runs: list[dict[str, Any]] = []
    for concurrency, count in s.mx_counts.items():
        for round_ in range(s.rounds):
            order = KINDS if round_ % 2 == 0 else KINDS[::-1]  # A B C D, D C B A, ...
            runs += [mx_run(s, kind, concurrency, count, round_, say) for kind in order]
            if master and concurrency in postfix_mta.CONCURRENCIES:
                postfix_runs.append(run := postfix_mta.bench_round(
                    master, partial(load, s), concurrency, count, s.warmup, round_ + 1))
                say(postfix_mta.progress(run))
    summary = mx_summary(runs, list(s.mx_counts))
    for c, figures in postfix_mta.summary(runs, postfix_runs).items():
        summary[c].update(figures)
    if s.profile:
        say(
            f"  cProfile of the labmail server at c{max(s.mx_counts)}: "
            f"{s.profile / f'mx-c{max(s.mx_counts)}.prof'}"
        )
    return {"client": s.client, "runs": runs, "postfix_runs": postfix_runs, "summary": summary}


# -- POP3 ---------------------------------------------------------------------------------------


def bench_pop3(s: Settings, say: Any) -> dict[str, Any]:
    import pop3bench  # tests/bench/pop3bench.py

    return pop3bench.bench_pop3(s, say)


# -- memory -------------------------------------------------------------------------------------


def bench_memory(s: Settings, say: Any, mx: dict[str, Any] | None) -> dict[str, Any]:
    import membench  # tests/bench/membench.py

    return membench.bench_memory(s, say, mx)


# -- end to end ---------------------------------------------------------------------------------


def bench_e2e(s: Settings, say: Any, mx: dict[str, Any] | None) -> dict[str, Any]:
    import e2e  # tests/bench/e2e.py

    return e2e.run(s, say, mx)


def bench_http(s: Settings, say: Any) -> dict[str, Any]:
    import http_bench  # tests/bench/http_bench.py

    return http_bench.run(s, say)


def machine() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ncpu = os.cpu_count() or 0
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    import aiosmtpd
    import aiosqlite

    return {
        "nproc": ncpu,
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiosmtpd": aiosmtpd.__version__,
        "aiosqlite": aiosqlite.__version__,
        "summary": f"{ncpu} cores, {model}, Python {platform.python_version()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 60 s)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["mx", "e2e", "pop3", "memory", "http"],
        help="run only these sections (repeatable)",
    )
    parser.add_argument("--output", "-o", default="bench-results.json", help="JSON figures")
    parser.add_argument("--rounds", type=int, help="A/B rounds per MX setting")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        choices=[1, 10, 50],
        help="MX: only these concurrencies (repeatable)",
    )
    parser.add_argument("--messages", type=int, help="MX: messages per run (all concurrencies)")
    parser.add_argument(
        "--client",
        choices=["auto", "smtp-source", "asyncio"],
        default="auto",
        help="MX load generator (auto: smtp-source when installed)",
    )
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of every server (uvloop: evaluation only)",
    )
    parser.add_argument(
        "--server-log",
        choices=["info", "off"],
        default="info",
        help="labmail server logging (info: as `mta serve` does, to a file)",
    )
    parser.add_argument(
        "--profile", type=Path, help="cProfile the labmail MX server at c50 into this folder"
    )
    args = parser.parse_args(argv)
    sections = args.only or ["mx", "e2e", "pop3", "memory", "http"]
    work = Path(tempfile.mkdtemp(prefix="labmail-bench-"))
    s = settings(args, work)
    if args.concurrency:
        s.mx_counts = {c: n for c, n in s.mx_counts.items() if c in args.concurrency}
    if args.messages:
        s.mx_counts = {c: args.messages for c in s.mx_counts}
    started = time.perf_counter()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "machine": machine(),
        "quick": s.quick,
        "loop": s.loop,
        "client": s.client,
        "server_log": s.log,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load": "/".join(f"{x:.2f}" for x in os.getloadavg()),  # 1/5/15 min, at the start
    }
    say(
        f"labmail benchmarks: {results['machine']['summary']}; load generator {s.client}; "
        f"work dir {work}"
    )
    try:
        if "mx" in sections:
            results["mx"] = bench_mx(s, say)
        if "e2e" in sections:
            results["e2e"] = bench_e2e(s, say, results.get("mx"))
        if "pop3" in sections:
            results["pop3"] = bench_pop3(s, say)
        if "memory" in sections:
            results["memory"] = bench_memory(s, say, results.get("mx"))
        if "http" in sections:
            results["http"] = bench_http(s, say)
    finally:
        ServerProcess.kill_all()
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = [
        {"target": n, "figure": v, "goal": g, "met": m} for n, v, g, m in verdicts(results)
    ]
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results)
    say(f"figures written to {args.output} ({results['seconds']} s)")
    failed = [r for r in results.get("mx", {}).get("runs", []) if not r["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
