"""The plugin as a third party meets it: test modules in a fresh pytest run (pytester)."""

from __future__ import annotations

import subprocess
import sys

import pytest

APP_TEST = '''
import smtplib
from email.message import EmailMessage


def send_welcome(host, port, login, password, to):
    """The "application": it only knows an SMTP server and a login."""
    msg = EmailMessage()
    msg["From"] = login
    msg["To"] = to
    msg["Subject"] = "Welcome aboard"
    msg.set_content("Your account is ready.")
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.login(login, password)
        smtp.send_message(msg)


def test_app_sends_a_welcome_mail(mail_lab):
    sender = mail_lab.sender
    send_welcome(mail_lab.smtp_host, mail_lab.smtp_port, sender.address, sender.password,
                 "bob@bob.lab")
    [msg] = mail_lab.wait_for("bob@bob.lab")
    assert msg["Subject"] == "Welcome aboard"
    assert "Your account is ready." in msg.text
'''

MISSING_MAIL_TEST = '''
import pytest


@pytest.mark.mail_lab(clock="fake")
def test_expects_mail_that_never_comes(mail_lab):
    mail_lab.account("carol@bob.lab")
    mail_lab.send(to="alice@alice.lab", subject="Note to self", body="local delivery")
    mail_lab.script_replies("bob.lab", "451 4.3.0 try later")
    mail_lab.send(to="bob@bob.lab", subject="Quarterly report", body="numbers")
    mail_lab.advance()  # the first attempt: 451
    mail_lab.wait_for("carol@bob.lab", timeout=0.2)
'''


@pytest.fixture(autouse=True)
def _ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def test_a_third_party_test_module_passes(pytester: pytest.Pytester,
                                          plugin_args: list[str]) -> None:
    pytester.makepyfile(test_app=APP_TEST)
    result = pytester.runpytest(*plugin_args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_mail_that_never_comes_fails_listing_what_arrived(pytester: pytest.Pytester,
                                                          plugin_args: list[str]) -> None:
    pytester.makepyfile(test_missing=MISSING_MAIL_TEST)
    result = pytester.runpytest(*plugin_args, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E * mail_lab: carol@bob.lab has 0 of 1 expected message(s) after 0.2s",
        "E * arrived (every mailbox of the lab):",
        "E *   alice@alice.lab  from alice@alice.lab  subject 'Note to self'",
        "E * still queued:",
        "E *   at alice.lab: * queued * 1 * (in 1s) * <alice@alice.lab> -> <bob@bob.lab>  "
        "[[]451 4.3.0 try later]",
        "E *   (fake clock: the queue moves only in mail_lab.advance())",
    ])
    assert "Quarterly report" not in result.stdout.str().split("arrived (every")[1].split(
        "still queued")[0]


def test_unknown_options_are_refused(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(test_bad='''
import pytest


@pytest.mark.mail_lab(clok="fake")
def test_typo(mail_lab):
    pass
''')
    result = pytester.runpytest(*plugin_args, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*mail_lab: unknown option(s) clok; known: clock, *"])


def test_the_marker_is_registered(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    result = pytester.runpytest(*plugin_args, "-p", "no:cacheprovider", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.mail_lab(clock=*"])


def test_importing_the_plugin_starts_nothing_and_imports_no_server() -> None:
    code = ("import sys, threading, mua.testing\n"
            "heavy = [m for m in ('mta', 'mta.lab', 'aiosmtpd', 'aiosqlite', 'aiosmtplib')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert threading.active_count() == 1\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
