"""The one polling thread: polls never overlap and never run on the UI loop.

It is a daemon thread, so a poll stuck in the kernel can never keep the
process alive after quit. Results reach the UI loop through
``loop.call_soon_threadsafe``.

With an event stream (:class:`app.core.watch.EventStream`) each result also
carries every transition the kernel reported since the last poll: the
tracepoint as root, the destroy groups otherwise. The stream is handed the
poller's own snapshot as its sample, so that there is one dump of the socket
table per interval, not two. It is stopped (its tracefs instance removed) when
the poller stops.

With ``record_snapshot`` the session record gets each poll's snapshot and lab
processes too (the recorder decides which to keep: a replay's key frames), also
on this thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from app.core.diff import diff
from app.core.interfaces import Interface
from app.core.model import Snapshot, SocketEvent
from app.core.procs import ProcessInfo
from app.core.sockets import SocketSource
from app.core.watch import EventStream
from app.ui.messages import PollResult

INTERFACES_EVERY = 5.0  # seconds between interface reads


class _Latest:
    """The poller's last snapshot, as the event stream's socket table."""

    def __init__(self) -> None:
        self.snapshot = Snapshot(taken_at=0.0, sockets=())

    def poll(self) -> Snapshot:
        return self.snapshot


class Poller:
    def __init__(
        self,
        source: SocketSource,
        deliver: Callable[[PollResult], object],
        interval: float,
        processes: Callable[[], list[ProcessInfo]] | None = None,
        interfaces: Callable[[], list[Interface]] | None = None,
        fail: Callable[[str], object] | None = None,
        record: Callable[[list[SocketEvent]], object] | None = None,
        stream: Callable[..., EventStream] | None = None,
        record_snapshot: Callable[[Snapshot, list[ProcessInfo]], object] | None = None,
        warn: Callable[[str], object] | None = None,
    ) -> None:
        self.source = source
        self.deliver = deliver
        self.interval = interval
        self.processes = processes
        self.interfaces = interfaces
        self.fail = fail
        self.record = record  # the session record is written here, not on the UI loop
        self.record_snapshot = record_snapshot  # (it rate-limits itself: called every poll)
        # A part of a poll that failed while the rest went on (the interfaces of a lab
        # host whose namespace was deleted, say): said once in words, until it recovers.
        self.warn = warn
        self._warned: str | None = None
        self._mode: str | None = None  # what the event stream saw at the last poll
        self.paused = False
        self.last_duration = 0.0
        self._previous: Snapshot | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Set by the UI once it has shown a result: the next poll waits for it, so a
        # UI slower than the interval never gets a queue of stale snapshots.
        self._consumed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observatory-poller", daemon=True)
        self._last_interfaces = 0.0
        self._latest = _Latest()
        # Made and started on the poller's thread: mounting tracefs is blocking work.
        self._make_stream = stream
        self.stream: EventStream | None = None
        self._notes: list[str] = []
        self._stream_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._close_stream()

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self.stream = self.stream, None
            self._make_stream = None
        if stream is not None:
            stream.close()  # removes the tracefs instance; safe while another thread reads

    def consumed(self) -> None:
        """The UI has shown the last result."""
        self._consumed.set()

    def poll_now(self) -> None:
        self._wake.set()

    def set_interval(self, seconds: float) -> None:
        self.interval = seconds
        stream = self.stream
        if stream is not None:
            stream.set_interval(seconds)
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._wake.set()

    def _start_stream(self) -> None:
        with self._stream_lock:
            if self._make_stream is None or self._stop.is_set():
                return
            stream = self._make_stream(source=self._latest, interval=self.interval)
            stream.start()
            self.stream = stream
            if stream.stale_removed:
                self._notes.append(
                    f"Removed {len(stream.stale_removed)} tracing instance(s) left by an "
                    f"observatory that was killed: {', '.join(stream.stale_removed)}"
                )
        if self._stop.is_set():
            self._close_stream()

    def _run(self) -> None:
        try:
            self._start_stream()
        except Exception as exc:  # the dashboard still works on samples
            if self.fail is not None:
                with contextlib.suppress(RuntimeError):
                    self.fail(f"watching transitions failed: {exc}")
        try:
            self._loop()
        finally:
            self._close_stream()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.paused:
                self._wake.wait()
                self._wake.clear()
                continue
            started = time.monotonic()
            try:
                result = self._poll_once()
            except Exception as exc:  # a poll must never kill the dashboard
                if self.fail is not None:
                    try:
                        self.fail(f"reading sockets failed: {exc}")
                    except RuntimeError:  # the UI loop is closed: we are quitting
                        return
            else:
                self._consumed.clear()
                try:
                    self.deliver(result)
                except RuntimeError:  # the UI loop is closed: we are quitting
                    return
                while not self._consumed.wait(0.1):
                    if self._stop.is_set():
                        return
            self.last_duration = time.monotonic() - started
            self._wake.wait(max(0.05, self.interval - self.last_duration))
            self._wake.clear()

    def _say(self, text: str) -> None:
        if self.warn is not None and text != self._warned:
            self._warned = text
            with contextlib.suppress(RuntimeError):  # the UI loop is closed: quitting
                self.warn(text)

    def _poll_once(self) -> PollResult:
        snap = self.source.poll()
        events = diff(self._previous, snap) if self._previous is not None else []
        self._previous = snap
        if events and self.record is not None:
            self.record(events)
        procs = self.processes() if self.processes is not None else []
        if self.record_snapshot is not None:
            self.record_snapshot(snap, procs)
        ifaces = None
        now = time.monotonic()
        if self.interfaces is not None and not 0 <= now - self._last_interfaces < INTERFACES_EVERY:
            self._last_interfaces = now
            try:
                ifaces = self.interfaces()
            except Exception as exc:  # the sockets go on; the Interfaces tab keeps its last
                self._say(f"could not read the interfaces (the tables go on without): {exc}")
            else:
                self._warned = None
        transitions = []
        stream = self.stream
        if stream is not None:
            self._latest.snapshot = snap
            stream.sample_now()  # the sample is this poll's snapshot, every poll
            transitions = stream.read(0)
            if self._mode is not None and stream.mode != self._mode:  # (switched off, say)
                self._say(f"The events changed: {stream.seeing}")
            self._mode = stream.mode
        notes, self._notes = self._notes, []
        return PollResult(
            snap,
            events,
            procs,
            ifaces,
            transitions,
            stream.seeing if stream is not None else None,
            notes,
        )
