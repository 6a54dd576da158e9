"""One stream of socket events, from whatever this user may read: what ``observatory
watch`` prints and what the dashboard's timeline draws.

Three sources, each used only for what the others cannot see:

* ``tracepoint`` (root): every TCP state transition, from the kernel tracepoint
  ``sock:inet_sock_set_state`` (:mod:`app.core.tracepoint`), even of a
  connection that lived a millisecond;
* ``destroy`` (any user): every socket the kernel destroys, from the sock_diag
  destroy groups that ``ss -E`` joins (:class:`app.core.diag.DestroyListener`).
  The message carries the socket's ends but not its owner, and its state is
  CLOSE by then: the state it had comes from the last sample;
* ``poll`` (any user): the socket table, sampled every ``interval`` seconds
  and compared with the sample before (:func:`app.core.diff.diff`).

As root, the tracepoint reports every TCP transition, so the samples only add
what it cannot show: ``TIME_WAIT`` (entering it, the tracepoint says
``FIN_WAIT2 -> CLOSE``: the socket is replaced by a time-wait entry, which the
table shows), a TIME_WAIT entry that ends, and UDP. The poll event of a
TIME_WAIT says the state the tracepoint saw it leave (``FIN_WAIT2 ->
TIME_WAIT``). As another user, the destroy groups give every close and the
samples give the rest, with the states a sample happened to catch. The end of a
TIME_WAIT sends no destroy message (verified on Linux 6.18, 70 s after): only
the table tells.

The tracepoint is one for the whole machine, the samples and the destroy
groups are of this network namespace: with ``ports`` empty, a lab host's
namespace shows up in the tracepoint's lines only.

The same transition is never reported by two sources: a socket the destroy
groups reported closed is not reported again when the next sample misses it,
and a sample that misses a socket whose destroy message has not come waits
one more sample for it before it reports the close itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from app.core import diag
from app.core.diff import diff
from app.core.model import RawSocket, Snapshot, Socket, SocketEvent, format_endpoint
from app.core.tracepoint import StateTracer, TraceUnavailable, Transition

__all__ = ["EventStream", "Source", "WatchEvent"]

Source = Literal["tracepoint", "destroy", "poll"]
Mode = Literal["tracepoint", "destroy", "poll"]

# How long what the stream knows of a closed socket is kept (the state it left,
# for the TIME_WAIT that a later sample finds): a few samples.
_FORGET_AFTER = 10.0
# A bound on the owners learnt from tracepoint lines (a lost close line would
# otherwise keep its entry for ever).
_MAX_OWNERS = 65536
# Seconds between two looks at whether the tracing instance was switched off under us.
_CHECK_EVERY = 2.0


class _Poller(Protocol):
    def poll(self) -> Snapshot: ...


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of one socket, in the model's vocabulary (see app.core.model).

    ``old_state`` is None when the socket was not known before (a sample found it
    new, or its destroy message came before any sample saw it); ``new_state`` is
    "CLOSE" when the socket is gone. ``pid``/``process``: the process holding the
    socket (or that made the change), None when nobody can tell.
    """

    at: float  # epoch seconds
    proto: str  # "tcp", "tcp6", "udp", "udp6"
    local_addr: str
    local_port: int  # 0 in the tracepoint's CLOSE -> SYN_SENT: connect() has no port yet
    remote_addr: str | None
    remote_port: int | None
    old_state: str | None
    new_state: str | None
    pid: int | None
    process: str | None
    source: Source

    @property
    def key(self) -> str:
        """The socket's identity, as ``Socket.key`` spells it (protocol and both ends)."""
        return _key(
            self.proto, self.local_addr, self.local_port, self.remote_addr, self.remote_port
        )

    @property
    def sign(self) -> str:
        """``+`` a socket appeared, ``-`` it went, ``~`` it changed (as ``SocketEvent.sign``)."""
        if self.new_state == "CLOSE":
            return "-"
        return "+" if self.old_state in (None, "CLOSE") else "~"

    @property
    def text(self) -> str:
        """The change in words, as the timeline says it (without the sign): the states,
        the ends, the owner, and the source when it is not the tracepoint."""
        local = format_endpoint(self.local_addr, self.local_port)
        remote = (
            "*" if self.remote_addr is None else format_endpoint(self.remote_addr, self.remote_port)
        )
        who = f"{self.pid}/{self.process or '?'}" if self.pid is not None else ""
        # A sample's new socket has no state before it: "+ LISTEN ...", not "+ - -> LISTEN".
        states = f"{self.old_state} -> {self.new_state}" if self.old_state else f"{self.new_state}"
        if self.proto.startswith("udp"):
            states = "UDP opened" if self.new_state != "CLOSE" else "UDP closed"
        source = "" if self.source == "tracepoint" else f"  ({self.source})"
        return f"{states} {local} -> {remote}  {who}".rstrip() + source

    def to_json(self) -> dict[str, object]:
        """The contract's JSON object of ``observatory watch --json``."""
        return {
            "at": self.at,
            "proto": self.proto,
            "local_addr": self.local_addr,
            "local_port": self.local_port,
            "remote_addr": self.remote_addr,
            "remote_port": self.remote_port,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "pid": self.pid,
            "process": self.process,
            "source": self.source,
        }


def _key(
    proto: str, local_addr: str, local_port: int, remote_addr: str | None, remote_port: int | None
) -> str:
    remote = "*" if remote_addr is None else f"{remote_addr}:{remote_port}"
    return f"{proto} {local_addr}:{local_port} {remote}"


def _every(interval: float) -> str:
    return "once a second" if interval == 1.0 else f"every {interval:g} s"


def _reason(message: str) -> str:
    # The tracer's messages end in "; the observatory sees closes and ...":
    # the sentence of `seeing` says that part itself.
    return message.split(";")[0].strip()


class EventStream:
    """Socket events as they happen, from the best sources this user may read.

    Call :meth:`start`, then :meth:`read` in a loop, then :meth:`close` (or use it
    as a context manager). ``mode`` and ``seeing`` say, after :meth:`start`, what
    the stream can see.

    Args:
        ports: keep events whose local or remote port is one of these; empty: all.
        udp: UDP sockets too (opened and closed; UDP has no states).
        interval: seconds between two samples of the socket table.
        source: the socket table (anything with ``poll() -> Snapshot``);
            default :func:`app.core.sockets.default_source`.
    """

    def __init__(
        self,
        ports: Iterable[int] = (),
        udp: bool = False,
        interval: float = 1.0,
        source: _Poller | None = None,
    ) -> None:
        self.ports: frozenset[int] = frozenset(int(p) for p in ports)
        bad = sorted(p for p in self.ports if not 0 < p < 65536)
        if bad:
            raise ValueError(f"not a port: {bad[0]}")
        if not interval > 0:
            raise ValueError(f"the interval must be more than 0 seconds, not {interval}")
        self.udp = udp
        self.interval = float(interval)
        self.protos: tuple[str, ...] = ("tcp", "tcp6", "udp", "udp6") if udp else ("tcp", "tcp6")
        self.mode: Mode = "poll"
        self.seeing = f"sampled {_every(self.interval)}"
        self.unavailable: str | None = None  # why not every transition, in words
        self._no_destroy: str | None = None  # why not every close, in words
        self.stale_removed: list[str] = []  # tracefs instances of killed runs, removed
        self._source = source
        self._own_source = source is None
        self._tracer: StateTracer | None = None
        self._destroy: diag.DestroyListener | None = None
        self._epoll: select.epoll | None = None
        self._wake_r = self._wake_w = -1
        self._started = False
        self._closed = False
        self._checked = 0.0  # when the tracer was last checked (monotonic)
        self._next_poll = 0.0
        self._prev: Snapshot | None = None  # the last sample (filtered), None before the first
        self._taking: Snapshot | None = None  # the sample being taken, while kernel events are read
        self._older: dict[str, Socket] = {}  # the sample before it, by key (owners of the gone)
        # key -> (the state a socket left when it closed, when): for the TIME_WAIT
        # that a sample finds next, and so that a sample does not report the close again.
        self._closed_from: dict[str, tuple[str | None, float]] = {}
        # key -> the socket a sample missed, waiting one more sample for its destroy message.
        self._pending_gone: dict[str, tuple[Socket, float]] = {}
        # key -> (pid, process) learnt from tracepoint lines made by the owner.
        self._owners: dict[str, tuple[int, str | None]] = {}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Open the kernel sources; never raises for a user who may not read them.

        The first sample (the baseline: sockets that already exist are not events)
        is taken by the first :meth:`read`, so that a caller can say what it sees
        at once; the kernel queues what happens meanwhile.
        """
        if self._started:
            return
        self._started = True
        tracer = StateTracer(self.ports)
        try:
            tracer.start()
        except TraceUnavailable as exc:
            self.unavailable = str(exc)
        else:
            self._tracer = tracer
            self.stale_removed = list(tracer.stale_removed)
            self.mode = "tracepoint"
        if self._tracer is None or self.udp:
            try:  # as root with the tracepoint, only for UDP: it sees TCP closes itself
                self._destroy = diag.DestroyListener(udp=self.udp)
            except diag.DiagUnavailable as exc:
                self._no_destroy = str(exc)
            else:
                if self._tracer is None:
                    self.mode = "destroy"
        self.seeing = self._describe()
        if self._source is None:
            from app.core.sockets import default_source

            self._source = default_source(self.protos)
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        for fd in self._kernel_fds():
            self._epoll.register(fd, select.EPOLLIN)

    def _describe(self) -> str:
        every = _every(self.interval)
        if self.mode == "tracepoint":
            sampled = "TIME_WAIT and UDP" if self.udp else "TIME_WAIT"
            return (
                f"every transition (kernel tracepoint sock:inet_sock_set_state);"
                f" {sampled} sampled {every} from the socket table"
            )
        why = "run as root to see every transition"
        if os.geteuid() == 0 and self.unavailable:
            why = _reason(self.unavailable)
        if self.mode == "destroy":
            return f"sampled {every}, and every close — {why}"
        return (
            f"sampled {every} — a connection that opens and closes between two samples"
            f" is not seen ({self._no_destroy}); {why}"
        )

    def _kernel_fds(self) -> Iterator[int]:
        if self._tracer is not None:
            yield self._tracer.fileno()
        if self._destroy is not None:
            yield self._destroy.fileno()

    def set_interval(self, seconds: float) -> None:
        """Sample every ``seconds`` from now on (and say so in ``seeing``)."""
        if not seconds > 0:
            raise ValueError(f"the interval must be more than 0 seconds, not {seconds}")
        self.interval = float(seconds)
        if self._started:
            self.seeing = self._describe()

    def sample_now(self) -> None:
        """Make the next :meth:`read` take a sample, whenever the last one was.

        For a caller that owns the socket table's schedule (the dashboard's poller
        hands the stream its own snapshot as the sample).
        """
        self._next_poll = 0.0

    def interrupt(self) -> None:
        """Make a :meth:`read` that waits return now (safe from a signal handler)."""
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"\0")

    def close(self) -> None:
        """Stop; remove the tracefs instance (and unmount what we mounted). Idempotent."""
        self._closed = True
        self.interrupt()
        if self._tracer is not None:
            self._tracer.close()
        if self._destroy is not None:
            with contextlib.suppress(OSError):
                self._destroy.close()
        if self._epoll is not None:
            self._epoll.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        closer = getattr(self._source, "close", None)
        if self._own_source and callable(closer):
            with contextlib.suppress(OSError):
                closer()
            self._own_source = False

    def __enter__(self) -> EventStream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """Readable when a kernel source has something (an epoll set of them).

        Samples are taken by :meth:`read`: call it at least every ``interval``.
        """
        if self._epoll is None or self._closed:
            raise ValueError("the stream is not started, or closed")
        return self._epoll.fileno()

    # ------------------------------------------------------------------ reading

    def read(self, timeout: float) -> list[WatchEvent]:
        """The events that came, waiting at most ``timeout`` seconds for the first.

        Takes a sample whenever one is due. Returns [] when nothing came, after
        :meth:`interrupt`, and once closed. Events of one call are in time order.
        """
        if not self._started or self._closed:
            return []
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            while True:
                # A due sample first: it reads the kernel's events itself, right after
                # the socket table, so a close it saw the socket of has its state.
                if time.monotonic() >= self._next_poll:
                    events = self._sample()
                else:
                    events = self._kernel_events()
                if events:
                    events.sort(key=lambda e: e.at)
                    return events
                now = time.monotonic()
                if now >= deadline or self._closed:
                    return []
                assert self._epoll is not None
                ready = self._epoll.poll(max(0.0, min(deadline, self._next_poll) - now))
                if any(fd == self._wake_r for fd, _ in ready):
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    return []
        except (OSError, ValueError):
            if self._closed:  # closed from another thread while we read
                return []
            raise

    def _kernel_events(self) -> list[WatchEvent]:
        events: list[WatchEvent] = []
        if self._tracer is not None:
            events += [self._from_transition(t) for t in self._tracer.read(0)]
        if self._destroy is not None:
            for raw in self._destroy.read():
                event = self._from_destroy(raw)
                if event is not None:
                    events.append(event)
        return events

    def _wanted(self, proto: str, local_port: int, remote_port: int | None) -> bool:
        if proto not in self.protos:
            return False
        return not self.ports or local_port in self.ports or remote_port in self.ports

    def _seen(self, key: str) -> Socket | None:
        """The socket as the samples last saw it: the one being taken, the latest, the one
        before."""
        for snap in (self._taking, self._prev):
            sock = snap.by_key.get(key) if snap is not None else None
            if sock is not None:
                return sock
        return self._older.get(key)

    def _owner(self, key: str) -> tuple[int | None, str | None]:
        """Who holds the socket: the samples, else a tracepoint line."""
        sock = self._seen(key)
        if sock is not None and sock.pid is not None:
            return sock.pid, sock.process
        return self._owners.get(key, (None, None))

    def _from_transition(self, t: Transition) -> WatchEvent:
        key = _key(t.proto, t.local_addr, t.local_port, t.remote_addr, t.remote_port)
        pid, process = t.pid, t.process
        if t.local_port:  # not the connect() line: its socket has no port, no identity yet
            if pid is not None:
                if len(self._owners) >= _MAX_OWNERS:
                    self._owners.clear()
                self._owners[key] = (pid, process)
            else:
                pid, process = self._owner(key)
            if t.new_state == "CLOSE":
                self._closed_from[key] = (t.old_state, time.monotonic())
                self._owners.pop(key, None)
        return WatchEvent(
            t.at,
            t.proto,
            t.local_addr,
            t.local_port,
            t.remote_addr,
            t.remote_port,
            t.old_state,
            t.new_state,
            pid,
            process,
            "tracepoint",
        )

    def _from_destroy(self, raw: RawSocket) -> WatchEvent | None:
        if not raw.local_port:
            # Never bound nor connected (psutil's interface ioctls open UDP sockets like
            # that, the dashboard's own every few seconds): nothing anyone could see.
            return None
        if not self._wanted(raw.proto, raw.local_port, raw.remote_port):
            return None
        if self._tracer is not None and raw.proto.startswith("tcp"):
            return None  # the tracepoint reported this close already
        key = _key(raw.proto, raw.local_addr, raw.local_port, raw.remote_addr, raw.remote_port)
        pending = self._pending_gone.pop(key, None)
        sock = pending[0] if pending is not None else self._seen(key)
        # The message's state is CLOSE by now (UDP: NONE): the state it had is the sample's.
        old = sock.state if sock is not None else (None if raw.state == "CLOSE" else raw.state)
        pid, process = self._owner(key)
        self._closed_from[key] = (old, time.monotonic())
        return WatchEvent(
            time.time(),
            raw.proto,
            raw.local_addr,
            raw.local_port,
            raw.remote_addr,
            raw.remote_port,
            old,
            "CLOSE",
            pid,
            process,
            "destroy",
        )

    # ------------------------------------------------------------------ sampling

    def _check_tracer(self) -> None:
        """The tracer switched off under us: say so, and go on with closes and samples."""
        now = time.monotonic()
        if self._tracer is None or 0 <= now - self._checked < _CHECK_EVERY:
            return
        self._checked = now
        why = self._tracer.trouble()
        if why is None:
            return
        assert self._epoll is not None
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(self._tracer.fileno())
        self._tracer.close()  # its instance is removed: we will not use it again
        self._tracer = None
        self.unavailable = f"{why}; every transition is no longer seen"
        self.mode = "poll"
        if self._destroy is None:
            try:
                self._destroy = diag.DestroyListener(udp=self.udp)
            except diag.DiagUnavailable as exc:
                self._no_destroy = str(exc)
            else:
                self._epoll.register(self._destroy.fileno(), select.EPOLLIN)
        if self._destroy is not None:
            self.mode = "destroy"
        self.seeing = self._describe()

    def _sample(self) -> list[WatchEvent]:
        assert self._source is not None
        self._check_tracer()
        started = time.monotonic()
        snap = self._filtered(self._source.poll())
        # What the kernel sources recorded up to the end of the sample comes first,
        # so that the sample is compared with a state the stream already knows; a
        # socket that closed just after this sample saw it takes its state and owner
        # from it.
        self._taking = snap
        try:
            events = self._kernel_events()
        finally:
            self._taking = None
        self._next_poll = max(started + self.interval, time.monotonic())
        prev, self._prev = self._prev, snap
        self._older = prev.by_key if prev is not None else {}
        self._forget()
        if prev is None:  # the baseline: what exists already is no event
            return events
        late = self._pending_gone
        self._pending_gone = {}
        for key, (sock, at) in late.items():  # no destroy message came: the sample says it
            self._closed_from[key] = (sock.state, time.monotonic())
            events.append(self._from_socket(sock, at, sock.state, "CLOSE"))
        for change in diff(prev, snap):
            event = self._from_change(change)
            if event is not None:
                events.append(event)
        return events

    def _filtered(self, snap: Snapshot) -> Snapshot:
        kept = tuple(s for s in snap.sockets if self._wanted(s.proto, s.local_port, s.remote_port))
        if len(kept) == len(snap.sockets):
            return snap
        return Snapshot(taken_at=snap.taken_at, sockets=kept, duration=snap.duration)

    def _forget(self) -> None:
        cutoff = time.monotonic() - max(_FORGET_AFTER, 3 * self.interval)
        for key in [k for k, (_, when) in self._closed_from.items() if when < cutoff]:
            del self._closed_from[key]

    def _from_change(self, change: SocketEvent) -> WatchEvent | None:
        """The sample's change as an event, unless another source reported it."""
        sock, at = change.socket, change.at
        # The tracepoint's identity of it: the ends alone. (Socket.key also names a lab
        # host, which the tracepoint, one for the whole machine, cannot tell.)
        key = _key(sock.proto, sock.local_addr, sock.local_port, sock.remote_addr, sock.remote_port)
        kind = change.kind
        if kind == "owner-changed":
            return None
        tcp = sock.is_tcp
        if kind in ("connection-closed", "listener-closed", "udp-closed"):
            if sock.state == "TIME_WAIT":  # a time-wait entry ends: no source but the table
                self._closed_from[key] = ("TIME_WAIT", time.monotonic())
                return self._from_socket(sock, at, "TIME_WAIT", "CLOSE")
            if key in self._closed_from:
                return None  # reported closed (tracepoint, destroy) already
            if self._tracer is not None and tcp:
                return None  # the tracepoint's line for it is lost: do not guess
            if self._destroy is not None:
                self._pending_gone[key] = (sock, at)  # its destroy message may be on the way
                return None
            self._closed_from[key] = (sock.state, time.monotonic())
            return self._from_socket(sock, at, sock.state, "CLOSE")
        # Opened, or another state.
        if self._tracer is not None and tcp and sock.state != "TIME_WAIT":
            return None  # the tracepoint reported it
        old = change.old_state if kind == "state-changed" else None
        closed = self._closed_from.get(key)
        if closed is not None and sock.state == "TIME_WAIT":
            old = closed[0]  # the state it left for TIME_WAIT (tracepoint: "... -> CLOSE")
        return self._from_socket(sock, at, old, sock.state)

    @staticmethod
    def _from_socket(sock: Socket, at: float, old: str | None, new: str | None) -> WatchEvent:
        process = sock.process if sock.pid is not None else None
        return WatchEvent(
            at,
            sock.proto,
            sock.local_addr,
            sock.local_port,
            sock.remote_addr,
            sock.remote_port,
            old,
            new,
            sock.pid,
            process,
            "poll",
        )
