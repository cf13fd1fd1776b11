"""``mta queue list|flush|delete`` against a lab's database, and a running worker seeing a flush."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sending_helpers import ALICE, BOB, message, submit

from mta.cli import main
from mta.clock import FakeClock
from mta.config import Queue
from mta.lab import Lab


def config_file(lab: Lab, domain: str, folder: Path) -> str:
    """A TOML config for ``mta`` naming the lab domain's database."""
    config = lab[domain].config
    path = folder / f"{domain}.toml"
    path.write_text(f'domains = ["{domain}"]\ndatabase = "{config.database}"\n')
    return str(path)


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def test_list_and_delete(manual_lab: Lab, clock: FakeClock, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    alice = manual_lab["alice.lab"]
    first = await alice.store.enqueue(ALICE, message(), [BOB, "bert@bob.lab"], now=clock.now())
    second = await alice.store.enqueue(ALICE, message(), ["x@y.example"], now=clock.now())
    config = config_file(manual_lab, "alice.lab", tmp_path)

    assert await cli("--config", config, "queue", "list") == 0
    out = capsys.readouterr().out
    assert out.count(first) == 2 and out.count(second) == 1
    assert "<alice@alice.lab> -> <bert@bob.lab>" in out and "3 row(s) queued" in out

    rows = await alice.store.queue_rows()
    assert await cli("--config", config, "queue", "delete", str(rows[0].id)) == 0
    assert "deleted 1 queue row(s)" in capsys.readouterr().out
    assert await cli("--config", config, "queue", "delete", second.lower()) == 0
    assert [r.recipient for r in await alice.store.queue_rows()] == ["bert@bob.lab"]
    assert await alice.store.queued_message(second) is None
    assert await cli("--config", config, "queue", "delete", "NOSUCHID") == 1
    assert "no queue row or queue id NOSUCHID" in capsys.readouterr().err


async def test_flush_from_another_process_reaches_a_running_worker(
        lab_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = Queue(retry_initial=3600, retry_factor=2, retry_max=7200, lifetime=86400,
                 idle_recheck=0.2)
    lab = await lab_factory(queue=slow)
    alice = lab["alice.lab"]
    lab["bob.lab"].faults.script("451 4.3.0 try later")
    await submit(alice.ports["submission"], [BOB], message())

    async def deferred() -> bool:
        rows = await alice.store.queue_rows()
        return bool(rows) and rows[0].attempts == 1

    await alice.relay.wait_for(deferred, timeout=10)  # next attempt in an hour
    config = config_file(lab, "alice.lab", tmp_path)
    assert await cli("--config", config, "queue", "flush") == 0
    assert "1 queued row(s) made due now" in capsys.readouterr().out
    # the CLI's process cannot wake the worker; its idle re-check finds the flushed row
    await lab.wait_for_delivery(BOB, 1, timeout=10)
