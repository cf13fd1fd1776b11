"""``mua demo`` error exits that need no lab: bad attachments and the MuaError exit code.

They go through ``mua.cli.main``, which turns the demo's errors into one line and a code."""

from __future__ import annotations

from mua import cli, demo
from mua.errors import MuaError, UsageError


def test_missing_attachment_exits_2_before_the_lab_starts(tmp_path, monkeypatch, capsys):
    async def never(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("the lab was started")

    monkeypatch.setattr(demo, "_run", never)
    assert cli.main(["demo", "--attach", str(tmp_path / "nope.pdf")]) == 2
    assert "cannot attach" in capsys.readouterr().err
    assert cli.main(["demo", "--attach", str(tmp_path)]) == 2  # a directory is not a file


def test_mua_error_exit_code_is_kept(monkeypatch, capsys):
    for error, code in ((UsageError("bad"), 2), (MuaError("failed"), 1)):
        async def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(demo, "_run", fail)
        assert cli.main(["demo"]) == code
        assert f"mua: {error}" in capsys.readouterr().err
