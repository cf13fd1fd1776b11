"""SMTP load generators: Postfix's ``smtp-source`` when installed, else a small asyncio client.

Both send N messages of ~2 KB, one connection per message (EHLO, MAIL, RCPT, DATA, QUIT), no
pipelining, with at most C connections open at once. The asyncio client runs in a subprocess
of its own (``python tests/bench/loadgen.py ...``) so it never shares the server's core or GIL
with the benchmark driver either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SMTP_SOURCE_PATHS = ("/usr/sbin/smtp-source", "/usr/bin/smtp-source")
SENDER = "alice@alice.lab"
RECIPIENT = "bob@bob.lab"
BODY_LENGTH = 2000  # smtp-source -l: payload octets; with its headers the message is ~2 KB


def find_smtp_source() -> str | None:
    for path in SMTP_SOURCE_PATHS:
        if Path(path).exists():
            return path
    return shutil.which("smtp-source")


class SMTPError(Exception):
    pass


async def _reply(reader: asyncio.StreamReader, expect: str) -> str:
    """Read one (possibly multi-line) reply; raise unless its code starts with ``expect``."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    text = b"".join(lines).decode("utf-8", "replace")
    if not text.startswith(expect):
        raise SMTPError(text.strip())
    return text


async def send_one(host: str, port: int, message: bytes, timeout: float) -> None:
    """One message on a new connection: EHLO, MAIL, RCPT, DATA, QUIT (no pipelining)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await _reply(reader, "220")
            for command, expect in (
                (b"EHLO client.alice.lab\r\n", "250"),
                (f"MAIL FROM:<{SENDER}>\r\n".encode(), "250"),
                (f"RCPT TO:<{RECIPIENT}>\r\n".encode(), "250"),
                (b"DATA\r\n", "354"),
            ):
                writer.write(command)
                await _reply(reader, expect)
            writer.write(message + b".\r\n")
            await _reply(reader, "250")
            writer.write(b"QUIT\r\n")
            await _reply(reader, "221")
        finally:
            writer.close()


async def asyncio_load(
    host: str,
    port: int,
    count: int,
    concurrency: int,
    message: bytes,
    timeout: float = 30.0,
    deadline: float = 600.0,
) -> dict[str, Any]:
    """Send ``count`` messages with ``concurrency`` workers; bounded in count and time."""
    remaining = count
    errors: list[str] = []
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and len(errors) < 10:
            remaining -= 1
            started = time.perf_counter()
            try:
                await send_one(host, port, message, timeout)
            except (OSError, SMTPError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with asyncio.timeout(deadline):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"sent": len(latencies), "errors": errors, "seconds": elapsed}


async def submit_load(
    host: str,
    port: int,
    count: int,
    concurrency: int,
    login: str,
    password: str,
    recipient: str,
    interval: float = 0.0,
    timeout: float = 30.0,
    deadline: float = 600.0,
) -> dict[str, Any]:
    """Submission: each sender keeps its connection and AUTHs once, then MAIL/RCPT/DATA per
    message (``interval`` seconds apart); returns when each Message-ID got its 250."""
    import base64

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from servers import sample_message

    accepted: dict[str, float] = {}
    errors: list[str] = []
    numbers = iter(range(count))
    token = base64.b64encode(f"\0{login}\0{password}".encode()).decode()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            async with asyncio.timeout(timeout):
                await _reply(reader, "220")
                writer.write(b"EHLO client.alice.lab\r\n")
                await _reply(reader, "250")
                writer.write(f"AUTH PLAIN {token}\r\n".encode())
                await _reply(reader, "235")
            for number in numbers:
                message_id = f"<e2e.{number}@alice.lab>"
                raw = sample_message(number).replace(
                    f"<{number}.bench@alice.lab>".encode(), message_id.encode()
                )
                async with asyncio.timeout(timeout):
                    for command, expect in (
                        (f"MAIL FROM:<{login}>\r\n".encode(), "250"),
                        (f"RCPT TO:<{recipient}>\r\n".encode(), "250"),
                        (b"DATA\r\n", "354"),
                    ):
                        writer.write(command)
                        await _reply(reader, expect)
                    writer.write(raw + b".\r\n")
                    await _reply(reader, "250")
                accepted[message_id] = time.monotonic()
                if interval:
                    await asyncio.sleep(interval)
            writer.write(b"QUIT\r\n")
            await _reply(reader, "221")
        except (OSError, SMTPError, TimeoutError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    started = time.monotonic()
    async with asyncio.timeout(deadline):
        await asyncio.gather(*(sender() for _ in range(concurrency)))
    return {
        "accepted": accepted,
        "errors": errors,
        "started": started,
        "seconds": time.monotonic() - started,
    }


def run_submit_client(
    port: int, count: int, concurrency: int, interval: float, deadline: float
) -> dict[str, Any]:
    """The submission client in a subprocess of its own (times are CLOCK_MONOTONIC, which
    every process on the machine shares)."""
    return _client_process(port, count, concurrency, deadline,
                           ["--submit", "--interval", str(interval)], {"accepted": {}})


def run_smtp_source(
    path: str, port: int, count: int, concurrency: int, deadline: float
) -> dict[str, Any]:
    """Run smtp-source; the time is its wall time (process start included, ~1 ms)."""
    command = [
        path,
        "-s",
        str(concurrency),
        "-m",
        str(count),
        "-l",
        str(BODY_LENGTH),
        "-f",
        SENDER,
        "-t",
        RECIPIENT,
        "-M",
        "client.alice.lab",
        f"127.0.0.1:{port}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=deadline)
    elapsed = time.perf_counter() - started
    errors = [] if proc.returncode == 0 else [(proc.stderr or proc.stdout).strip()[-500:]]
    return {"sent": count if proc.returncode == 0 else 0, "errors": errors, "seconds": elapsed}


def run_asyncio_client(
    port: int, count: int, concurrency: int, deadline: float, message_size: int = 2048
) -> dict[str, Any]:
    """The asyncio client in a subprocess of its own; returns its JSON figures."""
    return _client_process(port, count, concurrency, deadline,
                           ["--size", str(message_size)], {"sent": 0})


def _client_process(port: int, count: int, concurrency: int, deadline: float,
                    extra: list[str], on_failure: dict[str, Any]) -> dict[str, Any]:
    """Run this file as a client process; its last output line is the JSON figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--port", str(port),
               "-n", str(count), "-c", str(concurrency), "--deadline", str(deadline), *extra]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=deadline + 30)
    if proc.returncode != 0:
        return {**on_failure, "errors": [proc.stderr.strip()[-500:]], "seconds": 0.0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="asyncio SMTP load generator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("-c", type=int, default=10)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument(
        "--submit",
        action="store_true",
        help="submission: AUTH once per connection, connections reused",
    )
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--login", default="alice@alice.lab")
    parser.add_argument("--password", default="bench-password")
    parser.add_argument("--rcpt", default=RECIPIENT)
    args = parser.parse_args()
    if args.submit:
        result = asyncio.run(
            submit_load(
                args.host,
                args.port,
                args.n,
                args.c,
                args.login,
                args.password,
                args.rcpt,
                args.interval,
                deadline=args.deadline,
            )
        )
        print(json.dumps(result))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from servers import sample_message

    result = asyncio.run(
        asyncio_load(
            args.host,
            args.port,
            args.n,
            args.c,
            sample_message(0, args.size),
            deadline=args.deadline,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
