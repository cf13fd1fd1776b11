"""``mta.memory``: what a long-running server process tunes once it is up."""

from __future__ import annotations

import subprocess
import sys


def test_freeze_start_up_hides_what_start_up_left_from_the_collector() -> None:
    """In a process of its own: frozen objects are never collected, so the test process
    itself must not freeze (nor should anything that starts many servers)."""
    code = ("import gc; from mta.memory import freeze_start_up; freeze_start_up(); "
            "print(gc.get_freeze_count(), gc.get_count()[2])")
    frozen, old = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split()
    assert int(frozen) > 1000 and int(old) == 0
