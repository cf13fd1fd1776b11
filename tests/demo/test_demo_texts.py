"""The demo's texts (mta.texts): every language says the same things."""

from __future__ import annotations

import string

from mta.texts import TEXT


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_language_has_the_same_keys_and_placeholders() -> None:
    english = TEXT["en"]
    assert set(TEXT) == {"en", "zh"}
    for lang, table in TEXT.items():
        assert set(table) == set(english), lang
        for key, template in table.items():
            assert fields(template) == fields(english[key]), (lang, key)


def test_the_texts_are_plain_strings() -> None:
    for table in TEXT.values():
        assert all(isinstance(v, str) and v.strip() for v in table.values())
        assert {f"s{n}" for n in range(1, 7)} | {f"s{n}.why" for n in range(1, 7)} <= set(table)
