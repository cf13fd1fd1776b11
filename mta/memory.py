"""Process memory tuning for a long-running server (steps 3-5 share one process).

Password hashing (scrypt, 16 MiB a call) runs in worker threads. With glibc's dynamic mmap
threshold such a block stays resident in every thread arena that ever hashed a password, so
an idle server would keep ~16 MiB per executor thread. A fixed threshold makes glibc map and
unmap blocks of 1 MiB and more (scrypt buffers, big messages) instead of keeping them.
"""

from __future__ import annotations

import ctypes
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
