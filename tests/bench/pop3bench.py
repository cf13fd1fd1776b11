"""The POP3 section: retrieval against Dovecot in the same run, and STAT/LIST on a big mailbox.

Retrieval is LIST then RETR of every ~2 KB message on one connection (login not timed), by two
clients: CPython's ``poplib`` (one command, wait for its reply, the next: bound by how fast this
machine wakes a process up, twice per message) and a raw-socket client that pipelines its RETRs
(RFC 2449 6.6) in a window, which shows what the server itself can do. labmail and a private
Dovecot (``dovecot.py``, when installed) serve the same messages from their own processes and
are measured alternately, A B A B, so the machine's drift hits both.
"""

from __future__ import annotations

import poplib
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dovecot
from servers import PASSWORD, USERS, sample_message

HOST = "127.0.0.1"
MB = 1024 * 1024
WINDOW = 64  # RETRs in flight at most (pipelined client)


def pop3_exchange(
    sock: socket.socket, command: bytes, multiline: bool, buffer: bytearray
) -> tuple[float, bytes]:
    """Send a command; time until its reply is complete (single line, or up to CRLF.CRLF)."""
    started = time.perf_counter()
    sock.sendall(command)
    while True:
        if not multiline:
            end = buffer.find(b"\r\n")
            if end >= 0:
                reply = bytes(buffer[: end + 2])
                del buffer[: end + 2]
                break
        else:
            if buffer.startswith(b"-ERR") and b"\r\n" in buffer:
                raise RuntimeError(bytes(buffer).decode())
            end = buffer.find(b"\r\n.\r\n")
            if end >= 0:
                reply = bytes(buffer[: end + 5])
                del buffer[: end + 5]
                break
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("POP3 server closed the connection")
        buffer += chunk
    return time.perf_counter() - started, reply


def login(port: int, user: str) -> tuple[socket.socket, bytearray, float]:
    """A logged-in raw connection, its read buffer, and the USER/PASS time."""
    sock = socket.create_connection((HOST, port), timeout=60)
    buffer = bytearray()
    pop3_exchange(sock, b"", False, buffer)  # greeting
    pop3_exchange(sock, f"USER {user}\r\n".encode(), False, buffer)
    took, reply = pop3_exchange(sock, f"PASS {PASSWORD}\r\n".encode(), False, buffer)
    if not reply.startswith(b"+OK"):
        sock.close()
        raise RuntimeError(f"POP3 login failed: {reply!r}")
    return sock, buffer, took


def complete_replies(buffer: bytearray) -> tuple[int, int]:
    """Take the complete RETR replies off the front of ``buffer``: (replies, body octets)."""
    replies = octets = 0
    while (status_end := buffer.find(b"\r\n")) >= 0:
        if not buffer.startswith(b"+OK"):
            raise RuntimeError(bytes(buffer[:status_end]).decode("utf-8", "replace"))
        end = buffer.find(b"\r\n.\r\n", status_end)  # an empty body ends at the status CRLF
        if end < 0:
            break
        octets += end + 2 - (status_end + 2)
        del buffer[: end + 5]
        replies += 1
    return replies, octets


def retrieve_pipelined(port: int, user: str) -> tuple[int, int, float]:
    """LIST, then every RETR pipelined, at most WINDOW in flight: (messages, octets, s)."""
    sock, buffer, _ = login(port, user)
    with sock:
        started = time.perf_counter()
        _, listing = pop3_exchange(sock, b"LIST\r\n", True, buffer)
        numbers = [int(item.split()[0]) for item in listing.split(b"\r\n")[1:-2]]
        sent = answered = octets = 0
        while answered < len(numbers):
            if sent < len(numbers) and sent - answered <= WINDOW // 2:
                batch = numbers[sent : sent + WINDOW - (sent - answered)]
                sock.sendall(b"".join(b"RETR %d\r\n" % n for n in batch))
                sent += len(batch)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("POP3 server closed the connection")
            buffer += chunk
            replies, got = complete_replies(buffer)
            answered += replies
            octets += got
        elapsed = time.perf_counter() - started
        pop3_exchange(sock, b"QUIT\r\n", False, buffer)
    return len(numbers), octets, elapsed


def retrieve_poplib(port: int, user: str) -> tuple[int, int, float]:
    """LIST, then RETR each message and wait for it (poplib): (messages, octets, s)."""
    pop = poplib.POP3(HOST, port, timeout=60)
    pop.user(user)
    pop.pass_(PASSWORD)
    started = time.perf_counter()
    _, listing, _ = pop.list()
    octets = 0
    for item in listing:
        _, _, size = pop.retr(int(item.split()[0]))
        octets += size
    elapsed = time.perf_counter() - started
    pop.quit()
    return len(listing), octets, elapsed


CLIENTS: dict[str, Callable[[int, str], tuple[int, int, float]]] = {
    "poplib": retrieve_poplib,
    "pipelined": retrieve_pipelined,
}


def compare(ports: dict[str, int], rounds: int, say: Any) -> dict[str, Any]:
    """Each client against each server, alternating servers within every round."""
    runs: list[dict[str, Any]] = []
    for port in ports.values():  # warm-up: Dovecot builds its index, SQLite fills its cache
        retrieve_pipelined(port, USERS[0])
    for round_ in range(rounds):
        for client, retrieve in CLIENTS.items():
            for name, port in ports.items():
                count, octets, elapsed = retrieve(port, USERS[0])
                rate = count / elapsed
                runs.append({"server": name, "client": client, "round": round_ + 1,
                             "messages": count, "seconds": round(elapsed, 4),
                             "msg_per_s": round(rate, 1),
                             "mb_per_s": round(octets / elapsed / MB, 2)})
                say(f"  pop3 {client:9} round {round_ + 1} {name:8} {rate:8.0f} msg/s")
    summary: dict[str, Any] = {}
    for client in CLIENTS:
        rates = {name: [r["msg_per_s"] for r in runs if r["client"] == client
                        and r["server"] == name] for name in ports}
        row: dict[str, Any] = {f"{name}_msg_per_s": statistics.median(v)
                               for name, v in rates.items()}
        if "dovecot" in rates:
            pairs = [a / b for a, b in zip(rates["labmail"], rates["dovecot"], strict=True)]
            row["ratio"] = round(statistics.median(pairs), 3)
            row["ratio_per_round"] = [round(p, 3) for p in pairs]
        summary[client] = row
    return {"runs": runs, "summary": summary}


def big_mailbox(port: int) -> dict[str, Any]:
    """STAT, LIST and UIDL on USERS[1]'s big mailbox: time from command to complete reply."""
    sock, buffer, took = login(port, USERS[1])
    with sock:
        stats, lists, uidls = [], [], []
        for _ in range(5):
            stats.append(pop3_exchange(sock, b"STAT\r\n", False, buffer)[0])
            t, listing = pop3_exchange(sock, b"LIST\r\n", True, buffer)
            lists.append(t)
            uidls.append(pop3_exchange(sock, b"UIDL\r\n", True, buffer)[0])
        pop3_exchange(sock, b"QUIT\r\n", False, buffer)
    return {
        "messages": listing.count(b"\r\n") - 2,
        "login_ms": round(took * 1000, 2),
        "stat_ms": round(statistics.median(stats) * 1000, 3),
        "list_ms": round(statistics.median(lists) * 1000, 3),
        "uidl_ms": round(statistics.median(uidls) * 1000, 3),
    }


def bench_pop3(s: Any, say: Any) -> dict[str, Any]:
    from run import server, server_args

    run_dir = Path(tempfile.mkdtemp(prefix="pop3-", dir=s.work))
    fill = [f"--fill={USERS[0]}={s.pop3_retrieve}", f"--fill={USERS[1]}={s.pop3_big}"]
    out: dict[str, Any] = {}
    binary = dovecot.installed()
    if binary is None:
        s.notes.append("Dovecot is not installed: POP3 has no same-run baseline")
    with server("mx", server_args(s, "mx", run_dir, ["--pop3", *fill]),
                s.work / "pop3.log") as proc:
        out["fill_seconds"] = proc.ready.get("fill_seconds")
        ports = {"labmail": proc.ports["pop3"]}
        peer = None
        if binary is not None:
            messages = [sample_message(i) for i in range(s.pop3_retrieve)]
            peer = dovecot.DovecotPOP3(binary, {USERS[0]: messages}, PASSWORD)
            peer.start()
            ports["dovecot"] = peer.port
        try:
            out["retrieve"] = compare(ports, max(s.rounds, 2), say)
        finally:
            if peer is not None:
                peer.stop()
        out["big_mailbox"] = big_mailbox(ports["labmail"])
        b = out["big_mailbox"]
        say(f"  pop3 {b['messages']} messages: USER/PASS {b['login_ms']:.1f} ms, "
            f"STAT {b['stat_ms']:.2f} ms, LIST {b['list_ms']:.2f} ms")
    shutil.rmtree(run_dir, ignore_errors=True)
    return out
