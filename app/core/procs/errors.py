"""The two errors of the process manager, each with a message of one line of words.

:class:`ProcessError` is what the manager refuses or cannot do (an unknown
name, a pid it did not start, a signal the system refused);
:class:`LaunchError`, a kind of it, says why a process could not be started.
"""

from __future__ import annotations


class ProcessError(Exception):
    """Something the manager refuses or cannot do; the message is one line of words."""


class LaunchError(ProcessError):
    """A process could not be started."""
