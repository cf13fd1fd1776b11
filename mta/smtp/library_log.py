"""aiosmtpd's own per-line log (steps 3 and 4), skipped when its logger would drop the line.

aiosmtpd passes every command line through ``sanitized_log`` twice (DEBUG and INFO on
``mail.log``), which masks AUTH secrets with a regular expression *before* the logger decides
whether to write anything. labmail turns ``mail.log`` down to WARNING (``mta.cli``: its own
trace replaces it), so that work was all waste: 5% of the MX's event loop (issue 16). This
module puts a wrapper in aiosmtpd's module that asks the logger first; when the level lets the
line through, aiosmtpd's function runs as before, secrets masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiosmtpd.smtp

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


_original = aiosmtpd.smtp.sanitized_log


def sanitized_log(func: Callable[..., None], msg: Any, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log`` when ``func`` (a logger's method) would write the line."""
    logger = getattr(func, "__self__", None)
    level = _LEVELS.get(getattr(func, "__name__", ""))
    if isinstance(logger, logging.Logger) and level is not None \
            and not logger.isEnabledFor(level):
        return
    _original(func, msg, *args, **kwargs)


def install() -> None:
    """Put ``sanitized_log`` in aiosmtpd's module (once per process; idempotent)."""
    aiosmtpd.smtp.sanitized_log = sanitized_log
