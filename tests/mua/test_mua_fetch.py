"""Step 5: fetching over POP3 from a real server on a loopback port into a local Maildir."""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime

import pytest
from mua_helpers import ALICE, BOB, USERS, make_profile

from mua.compose import build_message, to_bytes
from mua.fetch import UIDL_FILE, FetchError, fetch
from mua.trace import recording

PASSWORD = USERS[BOB]
DATE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def sample(n: int) -> bytes:
    msg = build_message(sender=ALICE, to=[BOB], subject=f"message {n} 你好",
                        date=DATE, message_id=f"<m{n}@alice.lab>",
                        body=f"body {n}\n.a line starting with a dot\n..two dots\n")
    return to_bytes(msg)


def stored(profile) -> list[bytes]:
    box = mailbox.Maildir(profile.maildir, factory=None, create=False)
    return sorted(box.get_bytes(k) for k in box.keys())


def bob_profile(tmp_path, pop3, **kwargs):
    return make_profile(tmp_path, address=BOB, pop3_port=pop3.port, **kwargs)


def test_fetch_stores_unstuffed_messages_and_empties_the_server(start_pop3, tmp_path, ca_file):
    pop3 = start_pop3()
    for n in range(3):
        pop3.mailbox(BOB).add(sample(n))
    profile = bob_profile(tmp_path, pop3, ca_file=ca_file)
    result = fetch(profile, PASSWORD)
    assert (result.on_server, result.downloaded, result.deleted) == (3, 3, 3)
    assert pop3.mailbox(BOB).messages == []
    assert "STLS" in pop3.commands  # opportunistic TLS was used
    got = stored(profile)
    assert got == sorted(sample(n).replace(b"\r\n", b"\n") for n in range(3))
    assert b"\n.a line starting with a dot\n..two dots\n" in got[0]
    # nothing left: a second fetch downloads nothing
    assert fetch(profile, PASSWORD).downloaded == 0
    assert json.loads((profile.maildir / UIDL_FILE).read_text()) == {
        f"{BOB}@127.0.0.1:{pop3.port}": []
    }


def test_keep_twice_downloads_once(start_pop3, tmp_path, ca_file):
    pop3 = start_pop3()
    pop3.mailbox(BOB).add(sample(1))
    profile = bob_profile(tmp_path, pop3, ca_file=ca_file)
    assert fetch(profile, PASSWORD, keep=True).downloaded == 1
    assert fetch(profile, PASSWORD, keep=True).downloaded == 0
    assert len(pop3.mailbox(BOB).messages) == 1
    pop3.mailbox(BOB).add(sample(2))
    result = fetch(profile, PASSWORD, keep=True)
    assert (result.downloaded, result.deleted) == (1, 0)
    assert result.octets_on_server == sum(len(d) for _, d in pop3.mailbox(BOB).messages) > 0
    assert len(stored(profile)) == 2
    # a classic fetch afterwards deletes both without downloading them again
    result = fetch(profile, PASSWORD)
    assert (result.downloaded, result.deleted) == (0, 2)
    assert pop3.mailbox(BOB).messages == []
    assert len(stored(profile)) == 2


def test_dropped_connection_keeps_folder_consistent_and_server_intact(start_pop3, tmp_path):
    pop3 = start_pop3(tls=False, drop_after_retr=2)
    for n in range(5):
        pop3.mailbox(BOB).add(sample(n))
    profile = bob_profile(tmp_path, pop3)
    with pytest.raises(FetchError, match="2 message\\(s\\) were stored locally.*nothing was "
                                         "deleted") as e:
        fetch(profile, PASSWORD)
    assert e.value.stored == 2
    assert len(pop3.mailbox(BOB).messages) == 5  # no QUIT: nothing deleted
    got = stored(profile)
    assert got == sorted(sample(n).replace(b"\r\n", b"\n") for n in range(2))
    assert list((profile.maildir / "tmp").iterdir()) == []  # no half-written message

    # the next fetch finishes the job: no duplicates, server emptied
    pop3.drop_after_retr = None
    result = fetch(profile, PASSWORD)
    assert (result.downloaded, result.deleted) == (3, 5)
    assert pop3.mailbox(BOB).messages == []
    assert stored(profile) == sorted(sample(n).replace(b"\r\n", b"\n") for n in range(5))


def test_wrong_password(start_pop3, tmp_path):
    pop3 = start_pop3(tls=False)
    pop3.mailbox(BOB).add(sample(1))
    with pytest.raises(FetchError, match=r"refused the login for bob@bob.lab: -ERR \[AUTH\]"):
        fetch(bob_profile(tmp_path, pop3), "wrong")
    assert len(pop3.mailbox(BOB).messages) == 1


def test_auth_plain_when_user_is_not_offered(start_pop3, tmp_path, ca_file):
    pop3 = start_pop3(user_command=False)
    pop3.mailbox(BOB).add(sample(1))
    assert fetch(bob_profile(tmp_path, pop3, ca_file=ca_file), PASSWORD).downloaded == 1
    assert "AUTH" in pop3.commands and "USER" not in pop3.commands


def test_stls_required_but_not_offered(start_pop3, tmp_path):
    pop3 = start_pop3(tls=False)
    with pytest.raises(FetchError, match="does not offer STLS"):
        fetch(bob_profile(tmp_path, pop3, pop3_security="starttls"), PASSWORD)


def test_trace_masks_password(start_pop3, tmp_path):
    pop3 = start_pop3(tls=False)
    pop3.mailbox(BOB).add(sample(1))
    with recording() as records:
        fetch(bob_profile(tmp_path, pop3), PASSWORD)
    assert {r.step for r in records} == {5}
    lines = [r.line for r in records]
    assert "PASS ****" in lines and "USER bob@bob.lab" in lines
    assert not any(PASSWORD in line for line in lines)
    for verb in ("STAT", "UIDL", "RETR 1", "DELE 1", "QUIT"):
        assert verb in lines


def test_progress_callback(start_pop3, tmp_path):
    pop3 = start_pop3(tls=False)
    for n in range(3):
        pop3.mailbox(BOB).add(sample(n))
    calls = []
    fetch(bob_profile(tmp_path, pop3), PASSWORD, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_against_labmail_pop3_server(loop_thread, tmp_path):
    """Interoperability with labmail's own POP3 server, when it is importable."""
    server_mod = pytest.importorskip("pop3.server")
    memory = pytest.importorskip("pop3.memory")
    maildrop = memory.MemoryMaildrop()
    maildrop.add_account(BOB, PASSWORD)
    for n in range(3):
        maildrop.deliver(BOB, sample(n))
    options = server_mod.POP3Options(hostname="pop3.test", allow_plaintext_auth=True,
                                     failed_auth_delay=0)
    server = loop_thread.run(server_mod.start_server(maildrop, "127.0.0.1", 0, options))
    try:
        port = server.sockets[0].getsockname()[1]
        profile = make_profile(tmp_path, address=BOB, pop3_port=port)
        assert fetch(profile, PASSWORD, keep=True).downloaded == 3
        assert fetch(profile, PASSWORD, keep=True).downloaded == 0
        result = fetch(profile, PASSWORD)
        assert (result.downloaded, result.deleted) == (0, 3)
        assert maildrop.messages(BOB) == []
        assert stored(profile) == sorted(sample(n).replace(b"\r\n", b"\n") for n in range(3))
    finally:
        async def stop():
            server.close()

        loop_thread.run(stop())


def test_bad_host_name_is_a_fetch_error(tmp_path):
    import dataclasses

    profile = make_profile(tmp_path, address=BOB)
    profile = dataclasses.replace(
        profile, pop3=dataclasses.replace(profile.pop3, host="a" * 64 + ".lab"))
    with pytest.raises(FetchError, match="cannot talk to") as e:
        fetch(profile, PASSWORD)
    assert e.value.stored == 0


def test_tls_error_mid_fetch_reports_what_was_stored(start_pop3, tmp_path, monkeypatch):
    import ssl

    from mua import fetch as fetch_module

    pop3 = start_pop3(tls=False)
    for n in range(3):
        pop3.mailbox(BOB).add(sample(n))
    real_retr = fetch_module.TracingPOP3.retr
    calls = []

    def retr(self, which):
        calls.append(which)
        if len(calls) == 3:
            error = ssl.SSLError(1, "record layer failure")
            error.reason = "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"
            raise error
        return real_retr(self, which)

    monkeypatch.setattr(fetch_module.TracingPOP3, "retr", retr)
    profile = bob_profile(tmp_path, pop3)
    with pytest.raises(FetchError, match="TLS failed.*2 message\\(s\\) were stored") as e:
        fetch(profile, PASSWORD)
    assert e.value.stored == 2
    assert len(stored(profile)) == 2


def test_uid_memory_journal_survives_an_interruption(start_pop3, tmp_path):
    pop3 = start_pop3(tls=False, drop_after_retr=2)
    for n in range(4):
        pop3.mailbox(BOB).add(sample(n))
    profile = bob_profile(tmp_path, pop3)
    with pytest.raises(FetchError):
        fetch(profile, PASSWORD, keep=True)
    journal = profile.maildir / (UIDL_FILE + ".journal")
    account = f"{BOB}@127.0.0.1:{pop3.port}"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [a for a, _uid in lines] == [account, account]
    with journal.open("a") as f:
        f.write('["torn by a cra')  # a crash mid-append must not break the next fetch
    pop3.drop_after_retr = 3  # the fixture counts RETRs across sessions: one more
    with pytest.raises(FetchError):
        fetch(profile, PASSWORD, keep=True)
    lines = journal.read_text().splitlines()
    assert lines[2] == '["torn by a cra' and json.loads(lines[3])[0] == account
    pop3.drop_after_retr = None
    result = fetch(profile, PASSWORD, keep=True)
    assert result.downloaded == 1  # the three remembered ones are not downloaded again
    assert len(stored(profile)) == 4
    assert not journal.exists()  # folded into the JSON file by the final save
    remembered = json.loads((profile.maildir / UIDL_FILE).read_text())[account]
    assert len(remembered) == 4 and remembered == sorted(remembered)


def test_trace_of_a_long_response_is_bounded(start_pop3, tmp_path):
    from mua.fetch import LONG_LINES_TRACED

    pop3 = start_pop3(tls=False)
    body = "".join(f"line {i}\n" for i in range(100)) + ".dot last\n"
    pop3.mailbox(BOB).add(to_bytes(build_message(sender=ALICE, to=[BOB], subject="long",
                                                 date=DATE, body=body)))
    profile = bob_profile(tmp_path, pop3)
    with recording() as records:
        fetch(profile, PASSWORD)
    lines = [(r.direction, r.line) for r in records]
    start = lines.index(("C", "RETR 1"))
    retr = lines[start + 1: lines.index(("C", "DELE 1"))]
    assert retr[0][1].startswith("+OK")  # the status line, then at most 40 lines of the message
    assert len(retr) == 1 + LONG_LINES_TRACED + 2  # ... the note and the final "."
    assert retr[-2] == ("S", "[more lines not shown]") and retr[-1] == ("S", ".")
    assert b"\n.dot last\n" in stored(profile)[0]  # unstuffed by poplib
