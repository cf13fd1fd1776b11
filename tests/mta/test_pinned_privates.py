"""The private names of libraries that labmail overrides or calls are still there.

pyproject.toml bounds aiosmtpd and aiosqlite below their next minor release; this test says
clearly which name went away if an installed version (a widened bound, a distribution's own
package) no longer has one, instead of a session failing somewhere deep inside.
"""

from __future__ import annotations

import inspect
import poplib
import smtplib

import aiosmtpd.smtp
import aiosqlite
import pytest

# (library object, private name, where labmail leans on it)
CLASS_NAMES = [
    (aiosmtpd.smtp.SMTP, "_handle_client", "mta.smtp.server: connection limit, 421 on shutdown"),
    (aiosmtpd.smtp.SMTP, "_timeout_cb", "mta.smtp.server: 421 before an idle close"),
    (aiosmtpd.smtp.SMTP, "_set_post_data_state", "mta.smtp.server: DATA's end"),
    (aiosmtpd.smtp.SMTP, "_call_handler_hook", "mta.smtp.server: DATA calls handle_DATA"),
    (aiosmtpd.smtp.SMTP, "_create_envelope", "mta.smtp.server: the typed LabEnvelope"),
    (aiosmtpd.smtp, "sanitized_log", "mta.smtp.library_log: skipped when mail.log drops it"),
    (aiosqlite.Connection, "_execute", "mta.store.connection: one trip per group commit"),
    (aiosqlite.Connection, "_conn", "mta.store.connection: the sqlite3 connection"),
    (poplib.POP3, "_putline", "mua.fetch: the client's POP3 trace"),
    (poplib.POP3, "_getline", "mua.fetch: the client's POP3 trace"),
    (poplib.POP3, "_getlongresp", "mua.fetch: bounded multi-line trace"),
    (poplib.POP3, "_shortcmd", "mua.fetch: AUTH PLAIN with an initial response"),
]


@pytest.mark.parametrize(("owner", "name", "use"), CLASS_NAMES,
                         ids=[f"{o.__name__}.{n}" for o, n, _ in CLASS_NAMES])
def test_a_private_method_labmail_uses_exists(owner: type, name: str, use: str) -> None:
    assert hasattr(owner, name), (f"{owner.__module__}.{owner.__name__}.{name} is gone from the "
                                  f"installed version; labmail needs it for {use}")


async def test_aiosmtpd_session_attributes_exist() -> None:
    session = aiosmtpd.smtp.SMTP(object())
    for name in ("_smtp_methods", "_tls_protocol"):
        assert name in vars(session), f"aiosmtpd's SMTP no longer sets {name} (mta.smtp.server)"
    # set when a connection is made: read and written by LabSMTP's DATA and STARTTLS
    made = inspect.getsource(aiosmtpd.smtp.SMTP.connection_made)
    for name in ("self._reader", "self._writer"):
        assert name in made, f"aiosmtpd's SMTP no longer sets {name} (mta.smtp.server)"


def test_smtplib_keeps_the_tls_server_name() -> None:
    assert "_host" in vars(smtplib.SMTP()), "smtplib.SMTP no longer has _host (mua.submit)"
