"""The HTTP listener: what it costs the MX, and how fast the API answers.

Cost: labmail's MX without the HTTP listener (A), with it idle (B) and with one Server-Sent
Events subscriber reading every event (C), A B C then C B A, round after round, in the same run
(a noisy machine's drift hits all three); the figure is the median of the rounds' B/A and C/A
at concurrency 10. The subscriber is a plain ``http.client`` reader in a thread of this process,
not of the server's, reading whole chunks and counting the events in them.

Speed: a 10,000-message mailbox (2,000 with ``--quick``), one keep-alive ``http.client``
connection: p50/p95 of listing it newest first (``limit=50``) and of fetching one message
parsed (headers, bodies, attachments, trace).
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from e2e import percentile

VARIANTS = ("mx", "mx+http", "mx+http+sse")
CONCURRENCY = 10
OWNER = "bob@bob.lab"


class EventReader(threading.Thread):
    """One SSE subscriber: reads ``/api/v1/events`` until the server closes the stream."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.connection.request("GET", "/api/v1/events")
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.status
        self.events = 0

    def run(self) -> None:
        # Whole chunks, not a Python loop per line: the reader shares the machine's two cores
        # with the server, and what is measured is the listener's cost, not this client's.
        marker = b"\nevent: "  # each event's "event:" line follows its "id:" line or a blank one
        tail = b""
        try:
            while chunk := self.response.read1(65536):
                data = tail + chunk
                self.events += data.count(marker)
                tail = data[-(len(marker) - 1):]
        except OSError:
            pass  # the server went away: the run is over


def _one_mx_run(s: Any, variant: str, count: int, say: Any) -> dict[str, Any]:
    from run import load, server, server_args

    run_dir = Path(tempfile.mkdtemp(prefix=f"http-{variant}-", dir=s.work))
    extra = ["--http"] if variant != "mx" else []
    reader = None
    with server("mx", server_args(s, "mx", run_dir, extra), s.work / "http-mx.log") as proc:
        port = proc.ports["smtp"]
        if variant.endswith("sse"):
            reader = EventReader(proc.ports["http"])
            reader.start()
        warm = load(s, port, s.warmup, min(CONCURRENCY, s.warmup))
        result = load(s, port, count, CONCURRENCY)
    if reader is not None:
        reader.join(30)
    final = proc.final
    ok = not result["errors"] and final.get("messages") == count + warm["sent"]
    rate = count / result["seconds"] if result["seconds"] else 0.0
    shutil.rmtree(run_dir, ignore_errors=True)
    say(f"  http cost c{CONCURRENCY} {variant:12} {rate:8.1f} msg/s"
        + (f"  ({reader.events} events streamed)" if reader else "")
        + ("" if ok else f"  FAILED {result['errors'][:1]}"))
    return {"variant": variant, "msg_per_s": round(rate, 1), "ok": ok,
            "events_streamed": reader.events if reader else None}


def mx_cost(s: Any, say: Any) -> dict[str, Any]:
    count = s.mx_counts.get(CONCURRENCY, max(s.mx_counts.values()))
    # A B C, then C B A: a drift within a round favours no variant
    runs = [dict(_one_mx_run(s, variant, count, say), round=r + 1)
            for r in range(s.rounds) for variant in (VARIANTS if r % 2 == 0 else VARIANTS[::-1])]
    rates = {v: [r["msg_per_s"] for r in runs if r["variant"] == v] for v in VARIANTS}
    base = statistics.median(rates["mx"])

    def ratio(variant: str) -> dict[str, Any]:
        # each round's ratio (its runs are minutes apart, not a whole run), then the median
        per_round = [b / a for a, b in zip(rates["mx"], rates[variant], strict=True) if a]
        return {"msg_per_s": statistics.median(rates[variant]),
                "ratio": round(statistics.median(per_round), 3) if per_round else None,
                "ratio_per_round": [round(p, 3) for p in per_round]}

    return {"concurrency": CONCURRENCY, "messages": count, "runs": runs,
            "without_msg_per_s": base, "idle": ratio("mx+http"), "sse": ratio("mx+http+sse"),
            "all_ok": all(r["ok"] for r in runs)}


def _timed_get(connection: http.client.HTTPConnection, path: str) -> tuple[float, Any]:
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 200, (path, response.status, body[:200])
    return elapsed, json.loads(body)


def api_latency(s: Any, say: Any) -> dict[str, Any]:
    from run import server, server_args

    size = 2000 if s.quick else 10_000
    repeats = 50 if s.quick else 300
    run_dir = Path(tempfile.mkdtemp(prefix="http-api-", dir=s.work))
    args = server_args(s, "mx", run_dir, ["--http", "--fill", f"{OWNER}={size}"])
    with server("mx", args, s.work / "http-api.log") as proc:
        connection = http.client.HTTPConnection("127.0.0.1", proc.ports["http"], timeout=30)
        listing = f"/api/v1/mailboxes/{OWNER}/messages?limit=50"
        _, first = _timed_get(connection, listing)
        assert len(first["messages"]) == 50
        one = f"/api/v1/mailboxes/{OWNER}/messages/{first['messages'][25]['id']}"
        times: dict[str, list[float]] = {"list": [], "message": []}
        for _ in range(repeats):  # alternate, so both see the same machine
            times["list"].append(_timed_get(connection, listing)[0])
            times["message"].append(_timed_get(connection, one)[0])
        connection.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    out: dict[str, Any] = {"mailbox": size, "requests": repeats}
    for name, values in times.items():
        out[name] = {"p50_ms": round(statistics.median(values) * 1000, 2),
                     "p95_ms": round(percentile(values, 0.95) * 1000, 2)}
        say(f"  http {name:8} on {size} messages: p50 {out[name]['p50_ms']} ms, "
            f"p95 {out[name]['p95_ms']} ms")
    return out


def run(s: Any, say: Any) -> dict[str, Any]:
    return {"cost": mx_cost(s, say), "api": api_latency(s, say)}


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    cost = result.get("cost", {})
    for key, label in (("idle", "idle"), ("sse", "+1 SSE reader")):
        if cost.get(key, {}).get("ratio") is not None:
            value = cost[key]["ratio"]
            rows.append((f"MX c{CONCURRENCY} with HTTP {label} / without", f"{value:.0%}",
                         ">= 95%", value >= 0.95))
    api = result.get("api", {})
    for name, label in (("list", "list 50 of"), ("message", "fetch 1 of")):
        if name in api:
            p50 = api[name]["p50_ms"]
            rows.append((f"HTTP {label} {api['mailbox']} msgs p50", f"{p50:.1f} ms", "< 50 ms",
                         p50 < 50))
    return rows


def figure_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    cost = result.get("cost", {})
    if cost:
        rows.append((f"MX c{CONCURRENCY} and the HTTP listener",
                     f"without {cost['without_msg_per_s']:.0f} msg/s",
                     f"idle {cost['idle']['msg_per_s']:.0f} ({_rounds(cost['idle'])}), "
                     f"one SSE subscriber {cost['sse']['msg_per_s']:.0f} "
                     f"({_rounds(cost['sse'])})"))
    api = result.get("api", {})
    for name, label in (("list", "list (limit 50)"), ("message", "one message parsed")):
        if name in api:
            rows.append((f"HTTP {label}", f"{api['mailbox']} messages",
                         f"p50 {api[name]['p50_ms']} ms, p95 {api[name]['p95_ms']} ms"))
    return rows


def _rounds(figure: dict[str, Any]) -> str:
    each = ", ".join(f"{r:.0%}" for r in figure["ratio_per_round"])
    return f"{figure['ratio']:.0%}; rounds {each}"
