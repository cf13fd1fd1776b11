"""The benchmark report: the figures table, the targets (issue 16) and their verdicts.

Ratios are to baselines measured in the same run (aiosmtpd's no-op, Postfix accepting and
delivering, Dovecot), so they hold on a noisy machine where absolute rates do not.
"""

from __future__ import annotations

import sys
from typing import Any

TARGETS = {
    "mx_ratio": 1.0,  # labmail MX, one process, durable / aiosmtpd no-op, at c10 and c50
    "mx_subscribed": 0.95,  # the same with a subscriber / without (issue 12)
    "mx_postfix_ratio": 2.0,  # labmail MX, one process / Postfix accept-and-deliver, c10 and c50
    "pop3_pipelined_ratio": 0.8,  # labmail / Dovecot, pipelined raw-socket client
    "pop3_poplib_ratio": 1.0,  # labmail / Dovecot, poplib (ping-pong)
    "pop3_msg_per_s": 5000,
    "pop3_big_ms": 50,
    "rss_c50_mb": 60,
    "big_factor": 4.0,
    "e2e_ratio": 0.6,
    "e2e_p50_ms": 5,
    "e2e_p95_ms": 10,
}

Verdict = tuple[str, str, str, bool | None]


def mx_verdicts(results: dict[str, Any]) -> list[Verdict]:
    rows: list[Verdict] = []
    goal = TARGETS["mx_ratio"]
    for c, v in results.get("mx", {}).get("summary", {}).items():
        if c == "1":
            continue
        for key, label in (("ratio", "1 process"), ("ratio_2workers", "2 workers")):
            if v.get(key) is not None:
                rows.append((f"MX c{c} labmail ({label})/no-op", f"{v[key]:.0%}",
                             f">= {goal:.0%}", v[key] >= goal))
        if v.get("ratio_postfix") is not None:
            ratio, floor = v["ratio_postfix"], TARGETS["mx_postfix_ratio"]
            rows.append((f"MX c{c} labmail/Postfix delivered", f"{ratio:.2f}x",
                         f">= {floor:.0f}x", ratio >= floor))
        watched, floor = v.get("ratio_subscribed"), TARGETS["mx_subscribed"]
        if watched is not None:
            rows.append((f"MX c{c} with/without subscriber", f"{watched:.0%}",
                         f">= {floor:.0%}", watched >= floor))
    return rows


def e2e_verdicts(results: dict[str, Any]) -> list[Verdict]:
    rows: list[Verdict] = []
    e2e = results.get("e2e", {})
    t = e2e.get("throughput") or {}
    if t.get("ratio") is not None:
        goal = TARGETS["e2e_ratio"]
        rows.append((f"e2e c{t['concurrency']} / MX c{t['concurrency']}", f"{t['ratio']:.0%}",
                     f">= {goal:.0%}", t["ratio"] >= goal))
    lat = e2e.get("latency") or {}
    for key in ("p50", "p95"):
        if f"{key}_ms" in lat:
            goal = TARGETS[f"e2e_{key}_ms"]
            value = lat[f"{key}_ms"]
            rows.append((f"e2e latency {key} (low load)", f"{value:.1f} ms", f"<= {goal} ms",
                         value <= goal))
    return rows


def pop3_verdicts(results: dict[str, Any]) -> list[Verdict]:
    rows: list[Verdict] = []
    pop = results.get("pop3", {})
    summary = pop.get("retrieve", {}).get("summary", {})
    for client in ("pipelined", "poplib"):
        row = summary.get(client, {})
        goal = TARGETS[f"pop3_{client}_ratio"]
        if row.get("ratio") is not None:
            rows.append((f"POP3 {client} labmail/Dovecot", f"{row['ratio']:.2f}x",
                         f">= {goal:.1f}x", row["ratio"] >= goal))
    if summary.get("poplib"):
        rate = summary["poplib"]["labmail_msg_per_s"]
        goal = TARGETS["pop3_msg_per_s"]
        rows.append(("POP3 RETR 2 KB (poplib)", f"{rate:.0f} msg/s", f">= {goal} msg/s",
                     rate >= goal))
    if pop.get("big_mailbox"):
        b = pop["big_mailbox"]
        goal = TARGETS["pop3_big_ms"]
        for key in ("stat_ms", "list_ms"):
            rows.append((f"POP3 {key[:4].upper()} {b['messages']} msgs", f"{b[key]:.1f} ms",
                         f"< {goal} ms", b[key] < goal))
    return rows


def memory_verdicts(results: dict[str, Any]) -> list[Verdict]:
    rows: list[Verdict] = []
    mem = results.get("memory", {})
    if mem.get("c50", {}).get("labmail_peak_rss_mb"):
        v, goal = mem["c50"]["labmail_peak_rss_mb"], TARGETS["rss_c50_mb"]
        rows.append(("RSS peak at c50", f"{v:.1f} MB", f"< {goal} MB", v < goal))
    if mem.get("big_message"):
        b, goal = mem["big_message"], TARGETS["big_factor"]
        for key, label in (("store_factor", "store"), ("retr_factor", "RETR")):
            rows.append((f"20 MB message, {label}", f"{b[key]:.2f}x size", f"< {goal:.0f}x",
                         b[key] < goal))
    return rows


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    """(target, figure, goal, met) rows."""
    rows = [*mx_verdicts(results), *e2e_verdicts(results), *pop3_verdicts(results),
            *memory_verdicts(results)]
    if results.get("http"):
        import http_bench

        rows += http_bench.verdicts(results["http"])
    return rows


def mx_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for c, v in results.get("mx", {}).get("summary", {}).items():
        rounds = ", ".join(f"{p:.0%}" for p in v["ratio_per_round"])
        rows.append((f"MX acceptance c{c}", f"no-op {v['noop_msg_per_s']:.0f} msg/s",
                     f"labmail {v['labmail_msg_per_s']:.0f} msg/s ({v['ratio']:.0%}; rounds "
                     f"{rounds}); with a bus subscriber "
                     f"{v['labmail_subscribed_msg_per_s']:.0f} msg/s "
                     f"({v['ratio_subscribed']:.0%} of without); 2 workers "
                     f"{v['labmail_2workers_msg_per_s']:.0f} msg/s ({v['ratio_2workers']:.0%})"))
        if "postfix_msg_per_s" in v:
            rounds = ", ".join(f"{p:.2f}" for p in v["ratio_postfix_per_round"])
            ratio = f"{v['ratio_postfix']:.2f}x" if v["ratio_postfix"] is not None else "-"
            rows.append((f"MX c{c} labmail / Postfix accept-and-deliver",
                         f"Postfix {v['postfix_msg_per_s']:.0f} msg/s",
                         f"labmail {v['labmail_msg_per_s']:.0f} msg/s ({ratio}; rounds {rounds}); "
                         f"Postfix CPU {v['postfix_cpu_ms_per_msg']:.2f} ms/msg"
                         + ("" if v["postfix_all_ok"] else "; a Postfix run FAILED")))
    return rows


def pop3_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    pop = results.get("pop3", {})
    for client, row in pop.get("retrieve", {}).get("summary", {}).items():
        text = f"labmail {row['labmail_msg_per_s']:.0f} msg/s"
        if "dovecot_msg_per_s" in row:
            rounds = ", ".join(f"{p:.2f}" for p in row["ratio_per_round"])
            text += (f", Dovecot {row['dovecot_msg_per_s']:.0f} msg/s "
                     f"({row['ratio']:.2f}x; rounds {rounds})")
        wake = "; bound by wake-ups" if client == "poplib" else ""
        rows.append((f"POP3 LIST+RETR ({client}{wake})", "2 KB messages", text))
    if pop.get("big_mailbox"):
        b = pop["big_mailbox"]
        rows.append(("POP3 big mailbox", f"{b['messages']} messages",
                     f"USER/PASS {b['login_ms']:.0f} ms, STAT {b['stat_ms']:.2f} ms, "
                     f"LIST {b['list_ms']:.2f} ms, UIDL {b['uidl_ms']:.2f} ms"))
    return rows


def memory_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    mem = results.get("memory", {})
    if mem.get("c50"):
        m = mem["c50"]
        rows.append(("peak RSS under load c50", f"no-op {m['noop_peak_rss_mb']} MB",
                     f"labmail {m['labmail_peak_rss_mb']} MB (VmHWM, reset after warm-up)"))
    if mem.get("big_message"):
        b = mem["big_message"]
        rows.append(("one 20 MB message", f"idle {b['idle_rss_mb']} MB",
                     f"store +{b['store_peak_growth_mb']} MB ({b['store_factor']}x), "
                     f"RETR +{b['retr_peak_growth_mb']} MB ({b['retr_factor']}x)"))
    return rows


def figure_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = mx_rows(results)
    e2e = results.get("e2e", {})
    if e2e.get("skipped"):
        rows.append(("end to end", "skipped", e2e["skipped"]))
    for key, value in e2e.get("rows", []):
        rows.append(("end to end", key, value))
    rows += pop3_rows(results) + memory_rows(results)
    if results.get("http"):
        import http_bench

        rows += http_bench.figure_rows(results["http"])
    return rows


def print_tables(results: dict[str, Any]) -> None:
    figures = figure_rows(results)
    checks = verdicts(results)
    mark = {True: "met", False: "MISSED", None: "-"}
    title = f"labmail benchmarks ({results['machine']['summary']}; load {results.get('load')})"
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=title)
        for name in ("benchmark", "setting", "figure"):
            table.add_column(name)
        for row in figures:
            table.add_row(*row)
        console.print(table)
        table = Table(title="targets")
        for name in ("target", "figure", "goal", "verdict"):
            table.add_column(name)
        for name, value, goal, met in checks:
            style = "green" if met else "red"
            table.add_row(name, value, goal, f"[{style}]{mark[met]}[/{style}]")
        console.print(table)
        return
    print(title)
    widths = [max(len(r[i]) for r in figures) for i in range(2)] if figures else [0, 0]
    for a, b, c in figures:
        print(f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}")
    print("targets")
    for name, value, goal, met in checks:
        print(f"  {name:<32} {value:>14}  {goal:<14} {mark[met]}")
