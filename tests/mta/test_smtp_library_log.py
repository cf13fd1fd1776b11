"""aiosmtpd's per-line log still works, secrets masked, when its logger is turned up; and is
skipped when the logger would drop it (mta.smtp.library_log, issue 16)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import smtplib

import aiosmtpd.smtp
import pytest

from mta.smtp import library_log


def test_the_wrapper_is_installed_once_the_listener_is_imported() -> None:
    import mta.smtp.server  # noqa: F401

    assert aiosmtpd.smtp.sanitized_log is library_log.sanitized_log
    assert library_log._original.__module__ == "aiosmtpd.smtp"
    # what the wrapper is for: aiosmtpd's session loop looks the name up in its module
    assert "sanitized_log(" in inspect.getsource(aiosmtpd.smtp.SMTP._handle_client)


def test_a_dropped_line_is_not_sanitized(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr(library_log, "_original", lambda *a, **k: seen.append(a))
    logger = logging.getLogger("mail.log")
    before = logger.level
    try:
        logger.setLevel(logging.WARNING)
        library_log.sanitized_log(logger.info, "%r", b"AUTH PLAIN c2VjcmV0")
        assert seen == []
        logger.setLevel(logging.DEBUG)
        library_log.sanitized_log(logger.info, "%r", b"AUTH PLAIN c2VjcmV0")
        assert len(seen) == 1
    finally:
        logger.setLevel(before)


async def test_aiosmtpd_still_logs_lines_masked_when_asked(mx, caplog) -> None:
    def talk() -> None:
        with smtplib.SMTP("127.0.0.1", mx.ports["mx"], timeout=10) as client:
            client.ehlo("client.example")
            client.docmd("AUTH", "PLAIN c2VjcmV0")
            client.noop()

    with caplog.at_level(logging.INFO, logger="mail.log"):
        await asyncio.to_thread(talk)
    lines = [r.getMessage() for r in caplog.records if r.name == "mail.log"]
    assert any("noop" in line.lower() for line in lines), lines
    assert any("AUTH PLAIN ********" in line for line in lines), lines
    assert not any("c2VjcmV0" in line for line in lines)
