"""Fixtures for the lab tests: ``lab_net``, a private network of Linux network namespaces."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_netns import IP, LabNetwork


def _namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path(IP).exists():
        return "the 'ip' command (iproute2) is not installed"
    return None


@pytest.fixture
def lab_net(tmp_path: Path, need_tool) -> Iterator[LabNetwork]:
    reason = _namespaces_unavailable()
    need_tool(reason is None, str(reason))
    net = LabNetwork(tag=f"lm{uuid.uuid4().hex[:8]}", prefix_len=24, work=tmp_path)
    try:
        try:
            net.start_switch()
        except RuntimeError as exc:
            need_tool(False, f"cannot create network namespaces here: {exc}")
        yield net
    finally:
        net.close()
