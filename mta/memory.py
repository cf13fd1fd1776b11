"""Process memory tuning for a long-running server (steps 3-5 share one process).

Start-up leaves ~100,000 long-lived objects (modules, classes, functions, the config) that
Python's cyclic garbage collector walks again in every full collection, and a server that
keeps an event history (the HTTP listener's) triggers full collections often: a history of
events is a steady stream of objects that live long. ``freeze_start_up`` takes them out of
its sight once the server is up (``gc.freeze``): with the HTTP listener idle that was a
quarter of what the listener cost the MX per message (callgrind, issue 13).

Password hashing (scrypt, 16 MiB a call) runs in worker threads. With glibc's dynamic mmap
threshold such a block stays resident in every thread arena that ever hashed a password, so
an idle server would keep ~16 MiB per executor thread. A fixed threshold makes glibc map and
unmap blocks of 1 MiB and more (scrypt buffers, big messages) instead of keeping them.
"""

from __future__ import annotations

import ctypes
import gc
import sys

_TUNED = False


def return_large_blocks_to_os() -> None:
    """Make glibc give freed blocks of 1 MiB or more back to the OS (once per process)."""
    global _TUNED
    if _TUNED or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 1024 * 1024)


def freeze_start_up() -> None:
    """Collect start-up's garbage, then let full collections skip everything still alive.

    For a server process (``mta serve`` and its workers) once its listeners are up: frozen
    objects are never collected, so a process that starts and stops many servers (tests,
    ``mta.lab``) must not call it.
    """
    gc.collect()
    gc.freeze()
