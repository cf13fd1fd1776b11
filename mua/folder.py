"""The local mail folder (between steps 5 and 6): the Maildir that ``fetch`` fills.

Messages are numbered 1, 2, ... in arrival order (the time stamp in each Maildir key), which is
the numbering ``mua list``, ``mua read N`` and ``mua save N`` share. Reading uses stdlib
``mailbox``; nothing here modifies the folder.
"""

from __future__ import annotations

import mailbox
import re
from dataclasses import dataclass
from pathlib import Path

from mua.errors import MuaError

_KEY_TIME = re.compile(r"^(\d+)(?:\.M(\d+))?(?:P\d+)?(?:Q(\d+))?")


class FolderError(MuaError):
    """The local folder is missing or has no such message."""


@dataclass(frozen=True)
class StoredMessage:
    number: int
    key: str
    data: bytes


def _order(key: str) -> tuple[int, int, int, str]:
    match = _KEY_TIME.match(key)
    if not match:
        return (2**63, 0, 0, key)
    seconds, micros, sequence = match.groups()
    return (int(seconds), int(micros or 0), int(sequence or 0), key)


def open_folder(path: Path) -> mailbox.Maildir:
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise FolderError(f"no mail folder at {path} yet: run 'mua fetch' first")
    return mailbox.Maildir(path, factory=None, create=False)


def keys(path: Path, box: mailbox.Maildir | None = None) -> list[str]:
    """Maildir keys in arrival order (``box``: the folder at ``path`` when already open)."""
    if box is None:
        box = open_folder(path)
    return sorted(box.keys(), key=_order)


def messages(path: Path) -> list[StoredMessage]:
    """Every message in arrival order, numbered from 1."""
    box = open_folder(path)
    result = []
    for number, key in enumerate(keys(path, box), start=1):
        try:
            data = box.get_bytes(key)
        except (KeyError, OSError):
            continue  # removed by another program meanwhile
        result.append(StoredMessage(number, key, data))
    return result


def get(path: Path, number: int) -> StoredMessage:
    """Message ``number`` (1-based, as ``mua list`` shows it)."""
    box = open_folder(path)
    ordered = keys(path, box)
    if not 1 <= number <= len(ordered):
        raise FolderError(
            f"no message {number}: the folder has {len(ordered)} message(s)"
            if ordered
            else f"no message {number}: the folder {path} is empty"
        )
    key = ordered[number - 1]
    try:
        return StoredMessage(number, key, box.get_bytes(key))
    except (KeyError, OSError) as e:
        raise FolderError(f"cannot read message {number}: {e}") from None
