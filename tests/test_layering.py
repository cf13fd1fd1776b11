"""Dependencies point one way (DESIGN): pop3 <- mta <- (mua's composition roots).

``pop3`` imports nothing from ``mta`` or ``mua``; ``mta`` nothing from ``mua``; the user agent's
core (everything in ``mua`` but its composition roots) nothing from ``mta`` or ``pop3``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUA_ROOTS = {"demo.py", "demo_web.py", "web_actions.py", "testing"}
FORBIDDEN = {"pop3": ("mta", "mua"), "mta": ("mua",), "mua": ("mta", "pop3")}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT / package)
        if package == "mua" and relative.parts[0] in MUA_ROOTS:
            continue
        bad = imported(path) & set(FORBIDDEN[package])
        if bad:
            wrong.append(f"{package}/{relative} imports {', '.join(sorted(bad))}")
    assert not wrong, "\n".join(wrong)
