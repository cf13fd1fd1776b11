"""Step 3: submit a composed message by SMTP to the sender's own server (RFC 6409).

The dialogue is EHLO, STARTTLS (when the server offers it, or always when the profile requires
it; RFC 3207), EHLO again, AUTH (RFC 4954), MAIL FROM, RCPT TO per recipient, DATA, ``.``, QUIT,
spoken by stdlib ``smtplib``. Every line is traced through ``mua.trace`` (secrets masked).

``submit`` returns a ``SubmitResult`` (which may list refused recipients: a partial success) or
raises ``SubmitError``, whose message is one human line that includes the server's reply.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from mua.compose import recipients, to_bytes
from mua.errors import MuaError
from mua.profile import Profile, ServerSettings
from mua.trace import Transcript

STEP = 3
DATA_LINES_TRACED = 200  # a trace shows at most this many message lines


class SubmitError(MuaError):
    """Submission failed; ``code`` and ``reply`` carry the server's answer when there was one."""

    def __init__(self, message: str, code: int | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply


@dataclass(frozen=True)
class SubmitResult:
    """What the server accepted: recipients, those refused (code, reply) and the final reply."""

    sender: str
    accepted: list[str]
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    reply: str = ""


class _TracingMixin:
    """Logs every line smtplib sends and receives through a ``Transcript``."""

    transcript: Transcript
    last_data_reply: tuple[int, bytes] | None = None

    def send(self, s: str | bytes) -> None:
        data = s.encode("ascii", "replace") if isinstance(s, str) else s
        lines = data.split(b"\r\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if len(lines) == 1:
            self.transcript.client(lines[0].decode("utf-8", "replace"))
        else:  # message data (RFC 5321 4.5.2: already dot-stuffed by smtplib)
            for line in lines[:DATA_LINES_TRACED]:
                self.transcript.client(line.decode("utf-8", "replace"))
            if len(lines) > DATA_LINES_TRACED:
                self.transcript.note("C", f"[{len(lines) - DATA_LINES_TRACED} more lines]")
        super().send(s)  # type: ignore[misc]

    def getreply(self) -> tuple[int, bytes]:
        code, text = super().getreply()  # type: ignore[misc]
        parts = text.decode("utf-8", "replace").split("\n")
        for i, part in enumerate(parts):
            sep = " " if i == len(parts) - 1 else "-"
            self.transcript.server(f"{code}{sep}{part}".rstrip())
        return code, text

    def data(self, msg: bytes) -> tuple[int, bytes]:
        reply = super().data(msg)  # type: ignore[misc]
        self.last_data_reply = reply
        return reply


class TracingSMTP(_TracingMixin, smtplib.SMTP):
    pass


class TracingSMTP_SSL(_TracingMixin, smtplib.SMTP_SSL):  # noqa: N801 - mirrors smtplib
    pass


def submit(
    profile: Profile,
    password: str,
    message: EmailMessage,
    *,
    bcc: Iterable[str] = (),
) -> SubmitResult:
    """Submit ``message`` as ``profile.address`` to the profile's SMTP server (step 3).

    Envelope recipients are the To, Cc and Bcc addresses of the message plus ``bcc``; the bytes
    sent never contain a Bcc field. Raises ``SubmitError`` on any failure.
    """
    server = profile.smtp
    rcpts = recipients(message, bcc)
    if not rcpts:
        raise SubmitError("the message has no recipients")
    data = to_bytes(message)
    try:
        return _submit(server, profile.address, password, rcpts, data)
    except _FAILURE_TYPES as e:
        raise _failure(server, e) from None


def _refused_every_recipient(
    server: ServerSettings, e: smtplib.SMTPRecipientsRefused
) -> SubmitError:
    refused = "; ".join(
        f"{addr}: {code} {_text(text)}" for addr, (code, text) in e.recipients.items()
    )
    first = next(iter(e.recipients.values()), (None, b""))
    return SubmitError(
        f"{server.peer} refused every recipient ({refused}); nothing was sent",
        first[0],
        _text(first[1]),
    )


# What the user reads for each failure, first match wins: subclasses before their bases
# (smtplib.SMTPException is an OSError, so the OSError line answers for the SMTP errors not
# named above it).
_FAILURES: tuple[tuple[type[Exception], Callable[[ServerSettings, Any], SubmitError]], ...] = (
    (smtplib.SMTPAuthenticationError,
     lambda s, e: _reply_error(f"{s.peer} refused the login for {s.login}", e)),
    (smtplib.SMTPSenderRefused,
     lambda s, e: _reply_error(f"{s.peer} refused the sender {e.sender}", e)),
    (smtplib.SMTPRecipientsRefused, _refused_every_recipient),
    (smtplib.SMTPDataError, lambda s, e: _reply_error(f"{s.peer} refused the message", e)),
    (smtplib.SMTPNotSupportedError, lambda s, e: SubmitError(f"{s.peer}: {e}")),
    (smtplib.SMTPServerDisconnected,
     lambda s, e: SubmitError(f"{s.peer} closed the connection: {e}")),
    (smtplib.SMTPResponseException,
     lambda s, e: _reply_error(f"{s.peer} answered with an error", e)),
    (ssl.SSLCertVerificationError, lambda s, e: SubmitError(
        f"TLS with {s.peer} failed: certificate not trusted ({e.verify_message});"
        " set smtp.ca_file in the profile")),
    (ssl.SSLError, lambda s, e: SubmitError(f"TLS with {s.peer} failed: {e.reason or e}")),
    (TimeoutError, lambda s, e: SubmitError(f"timed out talking to {s.peer}")),
    (ConnectionRefusedError,
     lambda s, e: SubmitError(f"cannot connect to {s.peer}: connection refused")),
    (OSError, lambda s, e: SubmitError(f"cannot talk to {s.peer}: {e.strerror or e}")),
    # e.g. a host name the socket layer refuses
    (ValueError, lambda s, e: SubmitError(f"cannot talk to {s.peer}: {e}")),
)
_FAILURE_TYPES = tuple(kind for kind, _ in _FAILURES)


def _failure(server: ServerSettings, error: Exception) -> SubmitError:
    """The one-line ``SubmitError`` for ``error`` (one of ``_FAILURE_TYPES``)."""
    return next(make(server, error) for kind, make in _FAILURES if isinstance(error, kind))


def _submit(
    server: ServerSettings,
    sender: str,
    password: str,
    rcpts: list[str],
    data: bytes,
) -> SubmitResult:
    context = server.ssl_context()  # also used by STARTTLS when "none" finds it offered
    if server.security == "tls":
        smtp: TracingSMTP | TracingSMTP_SSL = TracingSMTP_SSL(timeout=server.timeout,
                                                              context=context)
    else:
        smtp = TracingSMTP(timeout=server.timeout)
    smtp.transcript = Transcript(STEP, server.peer)
    smtp._host = server.host  # TLS server name; smtplib sets it only when __init__ connects
    try:
        code, text = smtp.connect(server.host, server.port)
        if code != 220:
            raise _reply_error(f"{server.peer} did not greet", code=code, text=text)
        smtp.ehlo()
        if server.security != "tls":
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            elif server.security == "starttls":
                raise SubmitError(
                    f"{server.peer} does not offer STARTTLS, which the profile requires"
                )
        if not smtp.has_extn("auth"):
            raise SubmitError(f"{server.peer} does not offer AUTH on this connection")
        smtp.login(server.login, password)
        mail_options = []
        if not data.isascii():
            if not smtp.has_extn("8bitmime"):
                raise SubmitError(f"the message has 8-bit data and {server.peer} lacks 8BITMIME")
            mail_options.append("BODY=8BITMIME")  # RFC 6152
        refused_raw = smtp.sendmail(sender, rcpts, data, mail_options)
        last = smtp.last_data_reply
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the message was accepted at "." already (RFC 5321 4.1.1.4)
    finally:
        smtp.close()
    refused = {addr: (code, _text(text)) for addr, (code, text) in refused_raw.items()}
    return SubmitResult(
        sender=sender,
        accepted=[r for r in rcpts if r not in refused],
        refused=refused,
        reply=f"{last[0]} {_text(last[1])}" if last else "",
    )


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return " ".join(text.split())


def _reply_error(
    what: str,
    error: smtplib.SMTPResponseException | None = None,
    *,
    code: int | None = None,
    text: bytes | str = b"",
) -> SubmitError:
    if error is not None:
        code, text = error.smtp_code, error.smtp_error
    reply = _text(text)
    return SubmitError(f"{what}: {code} {reply}", code, reply)
