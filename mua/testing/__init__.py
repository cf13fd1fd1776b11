"""labmail's pytest plugin: a whole mail system per test, behind one synchronous fixture.

Installing labmail registers this package under the ``pytest11`` entry point, so every test can
ask for ``mail_lab``: an in-process lab (``mta.lab``) with two domains, ``alice.lab`` (user
``alice``) and ``bob.lab`` (user ``bob``), each with real submission, MX and POP3 listeners on
ephemeral 127.0.0.1 ports, a fresh SQLite database under the test's ``tmp_path``, and static
routes to each other. The lab's event loop runs in a background thread, so test code stays
ordinary blocking code and any SMTP or POP3 library can talk to it::

    def test_signup_mail(mail_lab):
        app.send_welcome("bob@bob.lab", smtp=(mail_lab.smtp_host, mail_lab.smtp_port),
                         login=(mail_lab.sender.address, mail_lab.sender.password))
        [msg] = mail_lab.wait_for("bob@bob.lab")
        assert msg["Subject"] == "Welcome"

Time. By default the relay workers run in the background on the real clock: ``send`` then
``wait_for`` just works, and a 4xx is retried after 1, 2, 4, 8, 10, 10 ... s (lab speed). With
``@pytest.mark.mail_lab(clock="fake")`` the clock is a ``FakeClock`` and nothing is relayed in
the background: the queue moves only inside ``mail_lab.advance(seconds)``, which walks the clock
through every due retry up to the target time, deterministically and without sleeping
(``advance()`` with no argument makes the attempts due now, such as a first attempt).

Options (``@pytest.mark.mail_lab(...)``, or ``indirect`` parametrization of ``mail_lab`` with a
dict): ``clock`` ("real" or "fake"), ``catch_all`` (a domain such as "test.lab", or True for
"test.lab": every address there lands in one mailbox, and its MX port is ``mail_lab.mx_port``),
``domains`` ({domain: [users]} or {domain: {user: password}}), ``tls`` ("self-signed" or "off").

Looking back. ``wait_for`` fails the test (``MailWaitTimeout``, an AssertionError) with every
mailbox's messages (recipient, From, Subject) and what is still queued with its last reply.
``mail_lab.trace(message_id)`` gives every hop that carried a message, in order, from the
events the servers published on the lab's bus (``mta.lab_trace``): the submission session and
``accepted``, the relay's routing decision, session and attempts, the MX session and
``stored``, and after a fetch the POP3 retrieval; ``str()`` of it is the transcript.

This package is the pytest layer only (the hooks and the fixture here, the blocking facade in
``mua.testing.mail_lab``); everything it knows about the lab comes from ``mta.lab``. Nothing is
imported from ``mta`` and nothing starts until a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mua.testing.mail_lab import MailLab
from mua.testing.values import LabAccount, LabMessage, MailWaitTimeout, Sent

OPTIONS = ("clock", "catch_all", "domains", "tls")
_FROM_MTA = {"MessageTrace": "mta.lab_trace", "Hop": "mta.lab_trace",
             "TraceLine": "mta.lab_trace", "build_trace": "mta.lab_trace"}


def __getattr__(name: str) -> Any:
    """The trace types, from ``mta.lab_trace`` on first use (importing the plugin stays
    free of ``mta``)."""
    if name in _FROM_MTA:
        import importlib

        return getattr(importlib.import_module(_FROM_MTA[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mail_lab(clock='real'|'fake', catch_all=None|'test.lab'|True, domains={...}, "
        "tls='self-signed'|'off'): options of the labmail mail_lab fixture")


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("mail_lab"))):  # closest wins
        if marker.args:
            raise pytest.UsageError("@pytest.mark.mail_lab takes keyword options only: "
                                    + ", ".join(OPTIONS))
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, Mapping):
        options.update(param)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise pytest.UsageError(f"mail_lab: unknown option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(OPTIONS)}")
    return options


@pytest.fixture
def mail_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MailLab]:
    """A running two-domain mail lab (alice.lab, bob.lab) for this test; see ``mua.testing``."""
    lab = MailLab(tmp_path / "mail_lab", **_options(request)).start()
    try:
        yield lab
    finally:
        lab.close()


__all__ = ["LabAccount", "LabMessage", "MailLab", "MailWaitTimeout", "MessageTrace", "Sent",  # noqa: F822
           "TraceLine", "Hop", "build_trace", "mail_lab"]
