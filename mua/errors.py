"""The user agent's error types (all steps): one base class, each carrying its exit code.

The CLI catches ``MuaError`` and prints ``mua: <message>`` (one line, no traceback); library
callers (the demo, the pytest plugin) catch the specific subclass they care about.
"""


class MuaError(Exception):
    """A failure the user can act on; ``str(error)`` is one human-readable line."""

    exit_code = 1


class UsageError(MuaError):
    """Bad input from the user (arguments, profile, header values): exit code 2."""

    exit_code = 2
