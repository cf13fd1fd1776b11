"""The plugin's own tests: make sure ``mua.testing`` and ``pytester`` are loaded.

Once labmail is installed with its ``pytest11`` entry point the plugin is loaded already; until
then (or with plugin autoload off) it is registered here, exactly once.
"""

from __future__ import annotations

import importlib.metadata
import os

import pytest

import mua.testing


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not manager.is_registered(mua.testing):
        manager.register(mua.testing, "mua.testing")
    if not manager.has_plugin("pytester"):
        manager.import_plugin("pytester")


@pytest.fixture
def plugin_args() -> list[str]:
    """Command-line arguments that give a pytester run the plugin: none when the entry point
    loads it, else ``-p`` with the entry point's name or the module."""
    names = [ep.name for ep in importlib.metadata.entry_points(group="pytest11")
             if ep.value == "mua.testing"]
    if names and not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return []
    return ["-p", names[0] if names else "mua.testing"]
