"""``mta.smtp.paths.parse`` answers exactly as aiosmtpd's ``SMTP._getaddr`` does (issue 16: a
fast path for plain addresses must not change what any path parses to)."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mta.smtp import paths

LIMIT = 64


class _Reference(SMTP):
    local_part_limit = LIMIT

    def __init__(self) -> None:  # only _getaddr is used: no handler, no loop
        pass


def reference(arg: str) -> tuple[str | None, str | None]:
    try:
        return _Reference()._getaddr(arg)
    except (ValueError, IndexError, TypeError, AttributeError):
        return None, None  # what LabSMTP made of these before the fast path


_PIECES = st.sampled_from(["a", "\t", "B", "z9", "-", ".", "..", "@", "<", ">", " ", '"', "\\", "(",
                           ")", "[", "]", ",", ":", ";", "=", "+", "é", "\udc80", "SIZE=10",
                           "x" * 70, "!#$%&'*/=?^_`{|}~"])
_TEXT = st.lists(_PIECES, max_size=8).map("".join)
_PATHS = st.one_of(
    _TEXT,
    st.builds(lambda local, domain, rest: f"<{local}@{domain}>{rest}", _TEXT, _TEXT, _TEXT),
)


@settings(max_examples=1500, deadline=None)
@given(_PATHS)
@example("<bob@bob.lab>")
@example("<bob@bob.lab> SIZE=2048 BODY=8BITMIME")
@example("<bob@bob.lab> (note) SIZE=1")
@example("<bob@bob.lab>\t\tSIZE=1")
@example("<Bob.Smith+tag@Mail.Bob.lab>")
@example("<" + "x" * 65 + "@bob.lab>")
@example("<" + "x" * 64 + "@bob.lab>")
@example("<a..b@bob.lab>")
@example("<.a@bob.lab>")
@example("<a@bob..lab>")
@example("<@a,@b:c@d>")
@example("<>")
@example("bob@bob.lab")
@example(" <bob@bob.lab>")
@example("<bob@[127.0.0.1]>")
@example('<"bob smith"@bob.lab>')
def test_parse_answers_as_aiosmtpd_does(arg: str) -> None:
    assert paths.parse(arg, LIMIT) == reference(arg)


def test_plain_addresses_take_the_fast_path_unchanged() -> None:
    assert paths.parse("<Bob.Smith+tag@Mail.bob.lab> SIZE=10", LIMIT) == (
        "Bob.Smith+tag@Mail.bob.lab", "SIZE=10")
    assert paths.parse("<" + "x" * 65 + "@bob.lab>", LIMIT) == (None, None)
    assert paths.parse("<@", LIMIT) == (None, None)
