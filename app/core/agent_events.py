"""The agent's live events: one :class:`~app.core.watch.EventStream` fanned out to every client.

The stream is one for the agent (its tracepoint, as root, is a tracefs instance
named after the process: there can be one), started when the first client
subscribes and closed when the last one leaves (or at :meth:`EventHub.close`),
so an agent nobody watches costs nothing for events. A pump thread reads it and
hands each batch to every subscriber's queue without waiting: a subscriber
whose queue is full (a client that does not read) is dropped, and its
``dropped`` flag says so; the others never wait for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from app.core.model import Snapshot
from app.core.watch import EventStream, WatchEvent

__all__ = ["QUEUE_EVENTS", "EventHub", "Subscription"]

# Events one subscriber may have waiting before it is dropped.
QUEUE_EVENTS = 4096


class _Poller(Protocol):
    def poll(self) -> Snapshot: ...


class Subscription:
    """One client's queue of events. Read with :meth:`get`; end with :meth:`EventHub.leave`."""

    def __init__(self, ports: frozenset[int], limit: int = QUEUE_EVENTS) -> None:
        self.ports = ports
        self.limit = limit
        self.dropped = False  # too slow: events were lost, the client must go
        self.ended = False  # the hub closed, or the client was dropped
        self._events: deque[WatchEvent] = deque()
        self._ready = threading.Condition()

    def _offer(self, events: list[WatchEvent]) -> None:
        if self.ports:
            events = [
                e for e in events if e.local_port in self.ports or e.remote_port in self.ports
            ]
        if not events:
            return
        with self._ready:
            if len(self._events) + len(events) > self.limit:
                self.dropped = self.ended = True
                self._events.clear()
            else:
                self._events.extend(events)
            self._ready.notify_all()

    def _end(self) -> None:
        with self._ready:
            self.ended = True
            self._ready.notify_all()

    def get(self, timeout: float) -> list[WatchEvent]:
        """The events waiting, waiting at most ``timeout`` s for one; [] once ended."""
        with self._ready:
            if not self._events and not self.ended:
                self._ready.wait(timeout)
            out = list(self._events)
            self._events.clear()
            return out


class EventHub:
    """The agent's one event stream and its subscribers.

    Args:
        source: the socket table the stream samples (the agent's shared poller).
        make_stream: builds the stream (tests pass their own); default
            ``EventStream(source=source)``: TCP, every event, one sample a second.
    """

    def __init__(
        self, source: _Poller, make_stream: Callable[[_Poller], EventStream] | None = None
    ) -> None:
        self._source = source
        self._make = make_stream or (lambda src: EventStream(source=src))
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._stream: EventStream | None = None
        self._pump: threading.Thread | None = None
        self._closed = False
        self.seeing: str | None = None  # what the stream sees, in words, once started

    def join(self, ports: frozenset[int] = frozenset()) -> Subscription:
        """A new subscriber; the stream starts with the first one. Raises once closed."""
        sub = Subscription(ports)
        with self._lock:
            if self._closed:
                raise RuntimeError("the agent is stopping")
            if self._stream is None:  # started before sub counts: a failed start leaves none
                stream = self._make(self._source)
                try:
                    stream.start()
                except BaseException:
                    stream.close()
                    raise
                self.seeing = stream.seeing
                self._stream = stream
                self._pump = threading.Thread(
                    target=self._run, args=(stream,), name="agent-events", daemon=True
                )
                self._pump.start()
            self._subs.add(sub)
        return sub

    def leave(self, sub: Subscription) -> None:
        """Forget ``sub``; the stream stops when nobody is left."""
        sub._end()
        with self._lock:
            self._subs.discard(sub)
            if self._subs:
                return
            stream, pump = self._stream, self._pump
            self._stream = self._pump = None
        self._stop(stream, pump)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._stream is not None

    def close(self) -> None:
        """End every subscription and the stream (its tracefs instance removed). Idempotent."""
        with self._lock:
            self._closed = True
            subs, self._subs = list(self._subs), set()
            stream, pump = self._stream, self._pump
            self._stream = self._pump = None
        for sub in subs:
            sub._end()
        self._stop(stream, pump)

    @staticmethod
    def _stop(stream: EventStream | None, pump: threading.Thread | None) -> None:
        if stream is None:
            return
        stream.interrupt()
        if pump is not None and pump is not threading.current_thread():
            pump.join(timeout=5.0)
        stream.close()

    def _run(self, stream: EventStream) -> None:
        while True:
            with self._lock:
                if self._stream is not stream:
                    return
            try:
                events = stream.read(1.0)
            except (OSError, ValueError):  # broken: its clients end, the next join starts anew
                with self._lock:
                    subs: list[Subscription] = []
                    if self._stream is stream:
                        subs, self._subs = list(self._subs), set()
                        self._stream = self._pump = None
                for sub in subs:
                    sub._end()
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
                return
            if not events:
                continue
            with self._lock:
                subs = list(self._subs) if self._stream is stream else []
            for sub in subs:
                sub._offer(events)
