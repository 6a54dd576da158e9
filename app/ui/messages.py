"""Typed messages from the worker threads to the UI loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from app.core.interfaces import Interface
from app.core.lesson import Step
from app.core.model import Snapshot, SocketEvent
from app.core.procs import ProcessEvent, ProcessInfo
from app.core.watch import WatchEvent


@dataclass
class PollResult:
    """What one poll found: the snapshot, its diff and the lab processes' state."""

    snapshot: Snapshot
    events: list[SocketEvent]
    processes: list[ProcessInfo]
    interfaces: list[Interface] | None  # refreshed every few polls, else None
    # Every transition the kernel reported since the last poll (the event stream),
    # and what the stream can see, in words; empty and None without a stream.
    transitions: list[WatchEvent] = field(default_factory=list)
    seeing: str | None = None
    notes: list[str] = field(default_factory=list)  # said once to the user (a toast)


class SnapshotReady(Message):
    """A poll finished. Never replaced: each carries the events of its diff."""

    def __init__(self, result: PollResult) -> None:
        super().__init__()
        self.result = result


class PollFailed(Message):
    """A poll raised; the message says why in words. Latest wins."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PollFailed)


class ProcessEventMessage(Message):
    """A lab process started, printed a line, or ended. Never replaced."""

    def __init__(self, event: ProcessEvent) -> None:
        super().__init__()
        self.event = event


class LessonStepDone(Message):
    """A lesson step's actions ran (from the app's worker): what they said, the step's
    scan (port -> state), or why they could not run, in words."""

    def __init__(
        self,
        step: Step,
        notes: list[str],
        scan: dict[int, str] | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__()
        self.step = step
        self.notes = notes
        self.scan = scan
        self.error = error
