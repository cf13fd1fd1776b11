"""The memory section: peak RSS under load at c50 and one 20 MB message.

Peak RSS at c50 comes from the MX section's runs; with ``--only memory`` this section runs one
no-op and one labmail MX server itself, as the MX section does (warm-up, VmHWM reset, load).
The 20 MB message is stored through the MX and retrieved by POP3 from a server of its own; the
figure is the growth of VmHWM over the RSS before each step, as a factor of the message size.
"""

from __future__ import annotations

import poplib
import shutil
import smtplib
import tempfile
from pathlib import Path
from typing import Any

from servers import PASSWORD, USERS, sample_message

MB = 1024 * 1024


def big_message(size: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n"
    head = (
        b"From: alice@alice.lab\r\nTo: bob@bob.lab\r\nSubject: big\r\n"
        b"Message-ID: <big.bench@alice.lab>\r\n\r\n"
    )
    return head + line * ((size - len(head)) // len(line))


def peak_rss_runs(s: Any, say: Any) -> list[dict[str, Any]]:
    """One no-op and one labmail MX run at the top concurrency: VmHWM under load, after warm-up."""
    from run import load, server, server_args

    concurrency = max(s.mx_counts)
    count = s.mx_counts[concurrency]
    runs = []
    for kind in ("noop", "mx"):
        run_dir = Path(tempfile.mkdtemp(prefix=f"memory-{kind}-", dir=s.work))
        with server(kind, server_args(s, kind, run_dir), s.work / f"memory-{kind}.log") as proc:
            port = proc.ports["smtp"]
            load(s, port, s.warmup, min(concurrency, s.warmup))
            proc.reset_peak()
            result = load(s, port, count, concurrency)
            peak = proc.status().get("VmHWM")
        shutil.rmtree(run_dir, ignore_errors=True)
        if result["errors"]:
            say(f"  memory c{concurrency} {kind}: FAILED {result['errors'][:1]}")
            peak = None
        runs.append({"kind": kind, "concurrency": concurrency, "peak_rss_load": peak})
    return runs


def bench_memory(s: Any, say: Any, mx: dict[str, Any] | None) -> dict[str, Any]:
    from run import server, server_args

    out: dict[str, Any] = {}
    runs = mx["runs"] if mx else peak_rss_runs(s, say)
    top = str(max(s.mx_counts))
    peaks = {
        kind: [
            r["peak_rss_load"]
            for r in runs
            if r["kind"] == kind and str(r["concurrency"]) == top and r["peak_rss_load"]
        ]
        for kind in ("mx", "noop")
    }
    out["c50"] = {
        "labmail_peak_rss_mb": round(max(peaks["mx"]) / MB, 1) if peaks["mx"] else None,
        "noop_peak_rss_mb": round(max(peaks["noop"]) / MB, 1) if peaks["noop"] else None,
    }
    say(
        f"  memory peak RSS c{top}: labmail {out['c50']['labmail_peak_rss_mb']} MB, "
        f"no-op {out['c50']['noop_peak_rss_mb']} MB"
    )
    run_dir = Path(tempfile.mkdtemp(prefix="memory-", dir=s.work))
    size = s.big_message
    message = big_message(size)
    with server(
        "mx",
        server_args(s, "mx", run_dir, ["--pop3", f"--max-message-size={4 * size}"]),
        s.work / "memory.log",
    ) as proc:
        # one small message first, so first-use allocations are part of the idle baseline
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=120) as smtp:
            smtp.sendmail("alice@alice.lab", [USERS[2]], sample_message(0))
        idle = proc.status()["VmRSS"]
        proc.reset_peak()
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=120) as smtp:
            smtp.sendmail("alice@alice.lab", [USERS[0]], message)
        stored = proc.status()
        pop = poplib.POP3("127.0.0.1", proc.ports["pop3"], timeout=120)
        pop.user(USERS[0])
        pop.pass_(PASSWORD)  # scrypt (16 MiB) runs here: measured apart from RETR below
        after_login = proc.status()["VmRSS"]
        proc.reset_peak()
        _, lines, octets = pop.retr(1)
        retrieved = proc.status()
        pop.quit()
        got = sum(len(line) + 2 for line in lines)
    out["big_message"] = {
        "message_mb": round(len(message) / MB, 2),
        "idle_rss_mb": round(idle / MB, 1),
        "store_peak_growth_mb": round((stored["VmHWM"] - idle) / MB, 1),
        "store_factor": round((stored["VmHWM"] - idle) / len(message), 2),
        "retr_peak_growth_mb": round((retrieved["VmHWM"] - after_login) / MB, 1),
        "retr_factor": round((retrieved["VmHWM"] - after_login) / len(message), 2),
        "retrieved_octets": octets,
        "rss_after_mb": round(retrieved["VmRSS"] / MB, 1),
    }
    if got < len(message):
        out["big_message"]["error"] = f"retrieved {got} of {len(message)} octets"
    b = out["big_message"]
    say(
        f"  memory 20 MB message: store +{b['store_peak_growth_mb']} MB "
        f"({b['store_factor']}x), RETR +{b['retr_peak_growth_mb']} MB ({b['retr_factor']}x)"
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return out
