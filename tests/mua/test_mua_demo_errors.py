"""``mua demo`` error exits that need no lab: bad attachments and the MuaError exit code."""

from __future__ import annotations

import argparse

from mua import demo
from mua.errors import MuaError, UsageError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_missing_attachment_exits_2_before_the_lab_starts(tmp_path, monkeypatch, capsys):
    async def never(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("the lab was started")

    monkeypatch.setattr(demo, "_run", never)
    assert demo.run(parse("--attach", str(tmp_path / "nope.pdf"))) == 2
    assert "cannot attach" in capsys.readouterr().err
    assert demo.run(parse("--attach", str(tmp_path))) == 2  # a directory is not a file


def test_mua_error_exit_code_is_kept(monkeypatch, capsys):
    for error, code in ((UsageError("bad"), 2), (MuaError("failed"), 1)):
        async def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(demo, "_run", fail)
        assert demo.run(parse()) == code
        assert f"mua demo: {error}" in capsys.readouterr().err
