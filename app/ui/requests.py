"""What the screens ask the app to do, as messages (the Harlequin way).

A screen or widget posts one of these; it bubbles up to
:class:`app.ui.app.ObservatoryApp`, which owns the process manager and runs the
blocking part in a worker. The screen never holds the manager, and a test can
watch the requests a key press makes.
"""

from __future__ import annotations

from textual.message import Message

from app.core.model import Socket
from app.core.procs import ForeignProcess
from app.ui.screens.launch import LaunchRequest


class LaunchRequested(Message):
    """Start a lab program or any command (the launch dialog's answer)."""

    def __init__(self, request: LaunchRequest) -> None:
        super().__init__()
        self.request = request


class KillRequested(Message):
    """Signal a lab process, by its name, or a socket's owner, by its pid (a process
    the dashboard did not start is confirmed first)."""

    def __init__(self, target: str | int, sig: int) -> None:
        super().__init__()
        self.target = target
        self.sig = sig


class ForeignKillConfirmed(Message):
    """The user confirmed signalling a process the dashboard did not start."""

    def __init__(self, process: ForeignProcess, sig: int) -> None:
        super().__init__()
        self.process = process
        self.sig = sig


class RestartRequested(Message):
    """Stop and start a lab process again, with the same command."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class KillAllRequested(Message):
    """SIGTERM every lab process."""


class CloseRequested(Message):
    """End one TCP connection (SOCK_DESTROY), after the screen's confirmation."""

    def __init__(self, sock: Socket) -> None:
        super().__init__()
        self.sock = sock


class ScenarioRequested(Message):
    """Load a scenario file and start its processes."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


class QuitRequested(Message):
    """q: quit, after asking when lab processes still run (``running``: their names)."""

    def __init__(self, running: list[str]) -> None:
        super().__init__()
        self.running = running


class LessonOpenRequested(Message):
    """Load a lesson file into the Lesson band (the L key's answer)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
