"""The read-ahead maildrop view (pop3.readahead): RETR n brings the small messages after it."""

from __future__ import annotations

import asyncio
import poplib

import pytest

from pop3.maildrop import Maildrop
from pop3.memory import MemoryMaildrop
from pop3.readahead import ReadAhead

BOB = "bob@bob.lab"
CAROL = "carol@bob.lab"


def mailbox(*sizes: int) -> tuple[MemoryMaildrop, list[int]]:
    """A maildrop whose bob has one message of (about) each size; returns it and the ids."""
    md = MemoryMaildrop()
    md.add_account(BOB, "pw")
    md.add_account(CAROL, "pw")
    ids = [md.deliver(BOB, b"S: %d\r\n\r\n" % n + b"x" * size).id for n, size in enumerate(sizes)]
    return md, ids


def reads(md: MemoryMaildrop) -> list[str]:
    return [method for method, _ in md.calls if method.startswith("fetch")]


def test_both_maildrops_declare_the_whole_interface() -> None:
    assert isinstance(MemoryMaildrop(), Maildrop)
    assert isinstance(ReadAhead(MemoryMaildrop()), Maildrop)


async def test_retr_in_order_is_one_read() -> None:
    md, ids = mailbox(10, 10, 10, 10)
    view = ReadAhead(md)
    await view.list_entries(BOB)
    got = [await view.fetch(BOB, i) for i in ids]
    assert got == md.messages(BOB)
    assert reads(md) == ["fetch_many"]


async def test_batches_stop_at_the_octet_and_message_bounds() -> None:
    md, ids = mailbox(100, 100, 100, 100, 100)
    view = ReadAhead(md, batch_octets=250, batch_messages=64)
    await view.list_entries(BOB)
    assert view.batch_from(BOB, ids[0]) == ids[:2]
    view = ReadAhead(md, batch_octets=10_000, batch_messages=3)
    await view.list_entries(BOB)
    assert view.batch_from(BOB, ids[1]) == ids[1:4]
    assert view.batch_from(BOB, ids[4]) == ids[4:]
    assert view.batch_from(CAROL, ids[0]) == [ids[0]]  # not the listed owner's


async def test_a_large_message_is_read_alone() -> None:
    md, ids = mailbox(10, 5000, 10)
    view = ReadAhead(md, batch_octets=1000)
    await view.list_entries(BOB)
    assert await view.fetch(BOB, ids[1]) == md.messages(BOB)[1]
    assert reads(md) == ["fetch"]
    assert await view.fetch(BOB, ids[0]) == md.messages(BOB)[0]  # 1 and 2 > 1000: alone
    assert reads(md) == ["fetch", "fetch"]


async def test_any_order_and_gone_messages() -> None:
    md, ids = mailbox(10, 10, 10)
    view = ReadAhead(md)
    await view.list_entries(BOB)
    assert await view.fetch(BOB, ids[2]) == md.messages(BOB)[2]  # the last: a plain fetch
    assert await view.fetch(BOB, ids[1]) == md.messages(BOB)[1]  # reads 2 and 3 again
    await md.delete(BOB, [ids[0]])
    with pytest.raises(KeyError):
        await view.fetch(BOB, ids[0])
    view.forget()
    assert await view.fetch(BOB, ids[2]) == md.messages(BOB)[1]  # read again, not kept
    assert reads(md) == ["fetch", "fetch_many", "fetch_many", "fetch"]


async def test_the_server_reads_a_maildrop_downloaded_in_order_once(start_pop3, maildrop) -> None:
    running = await start_pop3()

    def session() -> list[bytes]:
        client = poplib.POP3(running.host, running.port, timeout=10)
        client.user(BOB)
        client.pass_("bob secret")
        got = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in (1, 2, 3)]
        client.quit()
        return got

    assert await asyncio.to_thread(session) == maildrop.messages(BOB)
    assert reads(maildrop) == ["fetch_many"]


async def test_the_next_batch_is_read_before_this_one_runs_out() -> None:
    md, ids = mailbox(*[10] * 10)
    view = ReadAhead(md, batch_messages=4)
    await view.list_entries(BOB)
    assert await view.fetch(BOB, ids[0]) == md.messages(BOB)[0]
    assert await view.fetch(BOB, ids[1]) == md.messages(BOB)[1]  # two left: read on
    await asyncio.sleep(0)
    assert reads(md) == ["fetch_many", "fetch_many"]
    got = [await view.fetch(BOB, i) for i in ids[2:]]
    assert got == md.messages(BOB)[2:]
    assert reads(md) == ["fetch_many"] * 3  # 0-3, 4-7, 8-9: never one message at a time


async def test_forget_drops_a_batch_still_being_read() -> None:
    md, ids = mailbox(*[10] * 6)
    view = ReadAhead(md, batch_messages=2)
    await view.list_entries(BOB)
    await view.fetch(BOB, ids[0])  # reads 0-1, then 2-3 in the background
    view.forget()
    assert await view.fetch(BOB, ids[2]) == md.messages(BOB)[2]  # read again, not the dropped
