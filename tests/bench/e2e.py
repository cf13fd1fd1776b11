"""End to end: submission at alice.lab -> queue -> relay -> bob.lab's MX -> bob's mailbox.

Two labmail servers, each in a subprocess of its own: alice (submission + relay worker, a
static route to bob) and bob (MX + POP3, recording when each delivery commits). A submission
client in a third process keeps its connections and AUTHs once per connection. Latency is from
the ``250`` at submission to the commit in bob's mailbox, the moment from which a POP3 login
sees the message (both instants on CLOCK_MONOTONIC, shared by every process).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def one_run(
    s: Any, say: Any, count: int, concurrency: int, interval: float, label: str
) -> dict[str, Any]:
    from run import server, server_args

    bob_dir = Path(tempfile.mkdtemp(prefix="e2e-bob-", dir=s.work))
    alice_dir = Path(tempfile.mkdtemp(prefix="e2e-alice-", dir=s.work))
    with server(
        "mx", server_args(s, "mx", bob_dir, ["--pop3", "--track"]), s.work / "e2e-bob.log"
    ) as bob:
        route = f"bob.lab=127.0.0.1:{bob.ports['smtp']}"
        with server(
            "mx",
            server_args(
                s, "mx", alice_dir, ["--domain", "alice.lab", "--submission", "--route", route]
            ),
            s.work / "e2e-alice.log",
        ) as alice:
            sent = loadgen.run_submit_client(
                alice.ports["submission"], count, concurrency, interval, s.deadline
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # bounded wait for the relay to finish
                if bob.ask("count").get("delivered", 0) >= len(sent["accepted"]):
                    break
                time.sleep(0.05)
    delivered = bob.final.get("deliveries", {})
    accepted = sent["accepted"]
    latencies = [delivered[m] - t for m, t in accepted.items() if m in delivered]
    out: dict[str, Any] = {
        "label": label,
        "concurrency": concurrency,
        "messages": count,
        "accepted": len(accepted),
        "delivered": len(latencies),
        "errors": sent["errors"][:3],
    }
    if latencies:
        last = max(delivered[m] for m in accepted if m in delivered)
        span = last - sent["started"]
        out.update(
            {
                "seconds": round(span, 3),
                "msg_per_s": round(len(latencies) / span, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 2),
                "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
                "max_ms": round(max(latencies) * 1000, 2),
            }
        )
    shutil.rmtree(bob_dir, ignore_errors=True)
    shutil.rmtree(alice_dir, ignore_errors=True)
    say(
        f"  e2e {label}: {out.get('msg_per_s', 0)} msg/s, p50 {out.get('p50_ms')} ms, "
        f"p95 {out.get('p95_ms')} ms, {out['delivered']}/{count} delivered"
    )
    return out


def run(s: Any, say: Any, mx: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        import mta.smtp.submission  # noqa: F401
    except ImportError:
        say("  e2e: skipped (no submission listener)")
        return {"skipped": "labmail has no submission listener"}
    low_n = 40 if s.quick else 200
    latency = one_run(s, say, low_n, 1, 0.02, "low load (c1, one message per 20 ms)")
    concurrency = 10
    throughput = one_run(s, say, s.e2e_count, concurrency, 0.0, f"throughput (c{concurrency})")
    result: dict[str, Any] = {
        "visible": "committed in bob's mailbox (what a POP3 login sees)",
        "latency_run": latency,
        "throughput_run": throughput,
    }
    if "p50_ms" in latency:
        result["latency"] = {"p50_ms": latency["p50_ms"], "p95_ms": latency["p95_ms"]}
    mx_rate = None
    if mx:
        mx_rate = mx["summary"].get(str(concurrency), {}).get("labmail_msg_per_s")
    if "msg_per_s" in throughput:
        result["throughput"] = {
            "concurrency": concurrency,
            "msg_per_s": throughput["msg_per_s"],
            "mx_msg_per_s": mx_rate,
            "ratio": round(throughput["msg_per_s"] / mx_rate, 3) if mx_rate else None,
            "p50_ms": throughput.get("p50_ms"),
            "p95_ms": throughput.get("p95_ms"),
        }
    result["rows"] = [
        (
            latency["label"],
            f"p50 {latency.get('p50_ms')} ms, p95 {latency.get('p95_ms')} ms "
            f"({latency['delivered']}/{latency['messages']} delivered)",
        ),
        (
            throughput["label"],
            f"{throughput.get('msg_per_s')} msg/s"
            + (
                f" = {result['throughput']['ratio']:.0%} of MX c10"
                if result.get("throughput", {}).get("ratio")
                else ""
            )
            + f", p50 {throughput.get('p50_ms')} ms, "
            f"p95 {throughput.get('p95_ms')} ms",
        ),
    ]
    return result
