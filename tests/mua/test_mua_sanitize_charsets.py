"""Step 6: the sanitiser every message string passes, and the WHATWG charset labels."""

from __future__ import annotations

import pytest

from mua import charsets, sanitize


def test_text_keeps_lf_and_tab_and_drops_every_other_control():
    hostile = "a\x00b\x07c\x1b[31md\x1bce\x7ff\x85g\x9b2Jh\r\ni\rj\tk\u202eL\u200bM"
    assert sanitize.text(hostile) == "abc[31mdcefg2Jh\ni\nj\tkLM"
    assert sanitize.text("👩\u200d💻 [bold]x[/]") == "👩\u200d💻 [bold]x[/]"  # ZWJ, markup kept
    assert sanitize.line(" two\n lines\tand\x1b tabs ") == "two lines and tabs"


@pytest.mark.parametrize(
    "label, codec",
    [("gb2312", "gb18030"), ("GB2312", "gb18030"), ("gbk", "gb18030"), ("big5", "big5hkscs"),
     ("iso-8859-1", "cp1252"), ("us-ascii", "cp1252"), ("latin1", "cp1252"),
     ("shift_jis", "cp932"), ("euc-kr", "cp949"), ("ks_c_5601-1987", "cp949"),
     ("utf8", "utf-8"), (" UTF-8 ", "utf-8"), ("iso-8859-8-i", "iso8859-8"),
     ("iso-2022-kr", "iso2022_kr"),  # the spec's "replacement": the declared charset instead
     ("x-klingon", "utf-8"), ("base64", "utf-8"), (None, "utf-8")],
)
def test_codec_for_labels(label, codec):
    import codecs

    assert codecs.lookup(charsets.codec_for(label)).name == codecs.lookup(codec).name


def test_every_table_entry_has_a_python_codec():
    import codecs

    for name in charsets.LABELS:
        codecs.lookup(charsets.PYTHON_CODECS[name])


def test_decode_follows_a_byte_order_mark_and_never_raises():
    assert charsets.decode(b"\xef\xbb\xbfok", "iso-8859-1") == "ok"
    assert charsets.decode(b"\xfe\xff\x00o\x00k", "utf-8") == "ok"
    assert charsets.decode("朱镕基".encode("gbk"), "gb2312") == "朱镕基"
    assert charsets.decode(b"\x93x\x94 \x81", "iso-8859-1") == "\u201cx\u201d \ufffd"
    assert charsets.decode(b"ab\xfd", "x-unknown") == "ab\ufffd"
