"""Replay a session record: the tables as they were at any moment of it.

A record (:mod:`app.core.record`) is read into a :class:`Timeline` of frames, one
per moment something changed: the socket events of one poll, a lab process that
started or ended, a teacher's note, a snapshot that differs from what the events
built. The tables of a frame are the last full snapshot at or before it with the
socket events after it applied (opened: the socket is added from the event's
JSON; closed: removed by key; state or owner changed: replaced). The lab
processes come the same way from the snapshots and the started/exited entries.

A format 1 record has no snapshots: its tables are built from the events alone,
so a socket that existed before the session and never changed is not in them
(:attr:`Timeline.notes` says so).

:class:`app.core.replay_source.ReplaySource` plays a timeline back, as a socket
source the dashboard polls.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import shlex
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app.core.model import Snapshot, Socket, SocketEvent
from app.core.procs import ProcessExited, ProcessInfo, ProcessStarted
from app.core.record import (
    FORMAT_VERSION,
    Entry,
    RecordError,
    SessionLog,
    fallback_dirs,
    read_session,
    sessions_dir,
)
from app.core.terminal_text import printable

CHECKPOINT_EVERY = 200  # frames between full copies of the tables (a step costs at most this)
_OPENED = ("listener-opened", "connection-opened", "udp-opened")
_CLOSED = ("listener-closed", "connection-closed", "udp-closed")
_CHANGED = ("state-changed", "owner-changed")

ReplayEvent = ProcessStarted | ProcessExited


class ReplayError(RecordError):
    """The record cannot be replayed; ``str()`` is one line of words for the user."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One moment of the record at which something changed."""

    at: float  # when, as recorded (seconds since the epoch)
    kind: str  # "start", "sockets", "snapshot", "process", "note"
    texts: tuple[str, ...]  # what happened, in words (one line each)
    events: tuple[SocketEvent, ...] = ()  # the socket events of this moment
    process_events: tuple[ReplayEvent, ...] = ()  # a lab process started or ended


@dataclass(slots=True)
class _Change:
    """What a frame does to the tables: a full reset (a snapshot), then single changes."""

    sockets: dict[str, Socket] | None = None
    processes: dict[str, ProcessInfo] | None = None
    socket_changes: list[tuple[str, Socket | None]] = field(default_factory=list)
    process_changes: list[ProcessInfo] = field(default_factory=list)


def clock_text(at: float) -> str:
    """``14:03:07.123``: a frame's time of day, local."""
    moment = datetime.fromtimestamp(at)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


class Timeline:
    """A record's frames, and the tables at each (built on demand, cached by frame)."""

    def __init__(
        self,
        path: Path,
        version: int,
        frames: list[Frame],
        changes: list[_Change],
        *,
        skipped: int = 0,
        snapshots: int = 0,
        notes: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.format = version
        self.frames = tuple(frames)
        self.skipped = skipped  # unreadable lines (a torn last line, a broken entry)
        self.snapshots = snapshots  # full snapshots the record held
        self.notes = tuple(notes)  # what the user should know about this record, in words
        self._changes = changes
        # Positions strictly increase, so a time names one frame (two entries of one
        # instant, or a clock that went back, are moved a microsecond on).
        self.times: tuple[float, ...] = tuple(_increasing(f.at for f in frames))
        self._lock = threading.Lock()
        self._checkpoints: dict[int, tuple[dict[str, Socket], dict[str, ProcessInfo]]] = {}
        self._cached: tuple[int, Snapshot, list[ProcessInfo]] | None = None
        sockets: dict[str, Socket] = {}
        procs: dict[str, ProcessInfo] = {}
        for i, change in enumerate(changes):
            _apply(change, sockets, procs)
            if i % CHECKPOINT_EVERY == 0 or change.sockets is not None:
                self._checkpoints[i] = (dict(sockets), dict(procs))
        self._marks = sorted(self._checkpoints)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def start(self) -> float:
        return self.times[0]

    @property
    def end(self) -> float:
        return self.times[-1]

    def index_at(self, at: float) -> int:
        """The frame shown at position ``at``: the last one at or before it."""
        return max(0, bisect.bisect_right(self.times, at) - 1)

    def state(self, index: int) -> tuple[Snapshot, list[ProcessInfo]]:
        """The tables and the lab processes at frame ``index``."""
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == index:
                return cached[1], cached[2]
            mark = self._marks[bisect.bisect_right(self._marks, index) - 1]
            base_sockets, base_procs = self._checkpoints[mark]
            sockets, procs = dict(base_sockets), dict(base_procs)
            for change in self._changes[mark + 1 : index + 1]:
                _apply(change, sockets, procs)
            snap = Snapshot(
                taken_at=self.frames[index].at,
                sockets=tuple(sockets.values()),
                by_key=sockets,
            )
            result = (index, snap, list(procs.values()))
            self._cached = result
            return result[1], result[2]

    def snapshot(self, index: int) -> Snapshot:
        return self.state(index)[0]

    def processes(self, index: int) -> list[ProcessInfo]:
        return self.state(index)[1]

    def summary(self) -> str:
        """``20260509-140307.jsonl: format 2, 40 frames, 14:03:07 to 14:05:12 (2 min 5 s)``."""
        first, last = self.frames[0].at, self.frames[-1].at
        length = _duration(last - first)
        return (
            f"{self.path.name}: format {self.format}, {len(self.frames)} frames, "
            f"{clock_text(first)[:8]} to {clock_text(last)[:8]} ({length})"
        )


def _increasing(times: Iterable[float]) -> list[float]:
    out: list[float] = []
    for at in times:
        if out and at <= out[-1]:
            at = out[-1] + 1e-6
        out.append(at)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _apply(change: _Change, sockets: dict[str, Socket], procs: dict[str, ProcessInfo]) -> None:
    if change.sockets is not None:
        sockets.clear()
        sockets.update(change.sockets)
    if change.processes is not None:
        procs.clear()
        procs.update(change.processes)
    for key, sock in change.socket_changes:
        if sock is None:
            sockets.pop(key, None)
        else:
            sockets[key] = sock
    for proc in change.process_changes:
        procs[proc.name] = proc


# -- reading a record ---------------------------------------------------------------------
def load(path: str | os.PathLike[str]) -> Timeline:
    """Read a record into its timeline.

    Raises:
        RecordError: the file cannot be read (a :class:`ReplayError` when it is
            empty, not a session record, of a newer format, or holds nothing to replay).
    """
    return build(read_session(path))


def latest_record(env: Mapping[str, str] | None = None) -> Path:
    """The newest session record (``observatory replay latest``), wherever the dashboard
    records (the folders of ``observatory record list``).

    Raises:
        ReplayError: there is none.
    """
    folder = sessions_dir(env)
    found: list[tuple[float, str, Path]] = []
    for where in (folder, *fallback_dirs(env)):
        try:
            for path in where.glob("*.jsonl"):
                found.append((path.stat().st_mtime, path.name, path))
        except OSError:
            continue
    if not found:
        raise ReplayError(f"there is no session record yet in {folder}")
    return max(found)[2]


def build(log: SessionLog) -> Timeline:
    """The timeline of a record read by :func:`read_session` (see :func:`load`)."""
    entries = list(log.entries)
    name = log.path
    if not entries:
        if log.skipped:
            raise ReplayError(f"{name} is not a session record: none of its lines is one")
        raise ReplayError(f"{name} is empty: there is nothing to replay")
    header = entries[0]
    if header.get("type") != "session":
        raise ReplayError(f"{name} is not a session record: it does not start with a session line")
    version = header.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ReplayError(f"{name} is not a session record: its format is {version!r}")
    if version > FORMAT_VERSION:
        raise ReplayError(
            f"{name} was written by a newer observatory (format {version}); this one "
            f"replays formats 1 to {FORMAT_VERSION}"
        )
    builder = _Builder(_number(header.get("at")) or 0.0)
    bad = 0
    for entry in entries[1:]:
        try:
            builder.add(entry)
        except (ValueError, TypeError, KeyError, AttributeError):
            bad += 1
    builder.flush()
    if not builder.frames or (len(builder.frames) == 1 and builder.empty_start()):
        raise ReplayError(f"{name} holds no poll and no event yet: there is nothing to replay")
    notes = []
    if builder.snapshots == 0:
        notes.append(
            f"this record (format {version}) has no snapshots: the tables are rebuilt from "
            "the events alone, so they show only the sockets that changed during the session"
        )
    skipped = log.skipped + bad
    if skipped:
        notes.append(f"{skipped} unreadable line(s) of the record were skipped")
    return Timeline(
        log.path,
        version,
        builder.frames,
        builder.changes,
        skipped=skipped,
        snapshots=builder.snapshots,
        notes=notes,
    )


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _args_of(argv: tuple[str, ...], program: str | None) -> tuple[str, ...]:
    """A process's arguments as a student typed them (a built-in: after ``-m module``)."""
    if program is not None and "-m" in argv:
        return argv[argv.index("-m") + 2 :]
    return argv[1:]


class _Builder:
    """Turns a record's entries, in order, into frames and what each does to the tables."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.frames: list[Frame] = []
        self.changes: list[_Change] = []
        self.snapshots = 0
        self.sockets: dict[str, Socket] = {}
        self.procs: dict[str, ProcessInfo] = {}
        # The socket events of the poll being read (one frame per poll).
        self._group_at: float | None = None
        self._group: list[SocketEvent] = []

    def empty_start(self) -> bool:
        return self.frames[0].kind == "start" and not self.sockets and not self.procs

    def _frame(self, frame: Frame, change: _Change) -> None:
        if not self.frames and frame.kind != "snapshot":
            # Before the first snapshot (a format 1 record): empty tables at the start.
            self.frames.append(Frame(self.started, "start", ("the record starts",)))
            self.changes.append(_Change())
        self.frames.append(frame)
        self.changes.append(change)

    def flush(self) -> None:
        if not self._group or self._group_at is None:
            return
        events, at = self._group, self._group_at
        self._group, self._group_at = [], None
        change = _Change()
        for ev in events:
            if ev.kind in _CLOSED:
                self.sockets.pop(ev.key, None)
                change.socket_changes.append((ev.key, None))
            else:
                self.sockets[ev.key] = ev.socket
                change.socket_changes.append((ev.key, ev.socket))
        texts = tuple(ev.describe() for ev in events)
        self._frame(Frame(at, "sockets", texts, tuple(events)), change)

    def add(self, entry: Entry) -> None:
        kind = entry.get("type")
        if kind == "socket":
            self._socket(entry)
            return
        self.flush()
        if kind == "snapshot":
            self._snapshot(entry)
        elif kind == "process":
            self._process(entry)
        elif kind == "note":
            at = _number(entry.get("at")) or self._last_at()
            self._frame(Frame(at, "note", (f"note: {entry.get('text', '')}",)), _Change())

    def _last_at(self) -> float:
        return self.frames[-1].at if self.frames else self.started

    def _socket(self, entry: Entry) -> None:
        event_kind = entry.get("kind")
        if event_kind not in (*_OPENED, *_CLOSED, *_CHANGED):
            raise ValueError(f"unknown socket event {event_kind!r}")
        sock = Socket.from_json(entry.get("socket"))
        key = _text(entry.get("key")) or sock.key
        at = _number(entry.get("event_at")) or _number(entry.get("at")) or self._last_at()
        if self._group_at is not None and at != self._group_at:
            self.flush()
        self._group_at = at
        self._group.append(
            SocketEvent(
                at,
                event_kind,
                key,
                sock,
                _text(entry.get("old_state")),
                _text(entry.get("new_state")),
            )
        )

    def _snapshot(self, entry: Entry) -> None:
        at = _number(entry.get("taken_at")) or _number(entry.get("at")) or self._last_at()
        cmdlines = entry.get("cmdlines")
        cmdlines = cmdlines if isinstance(cmdlines, dict) else {}
        sockets: dict[str, Socket] = {}
        for data in entry.get("sockets") or ():
            sock = Socket.from_json(data)
            if not sock.cmdline and sock.pid is not None and str(sock.pid) in cmdlines:
                sock = dataclasses.replace(sock, cmdline=_strings(cmdlines[str(sock.pid)]))
            sockets[_text(data.get("key")) or sock.key] = sock
        procs = {p.name: p for p in map(_process_info, entry.get("processes") or ())}
        self.snapshots += 1
        if self.frames and sockets == self.sockets and procs == self.procs:
            return  # what the events built already: no new moment
        change = _Change(sockets=sockets, processes=procs)
        if self.frames and self.frames[-1].at == at and self.frames[-1].kind == "sockets":
            # The snapshot of the poll whose events make the last frame: that frame's tables
            # are the snapshot (the counters the events did not carry are in it).
            last = self.changes[-1]
            last.sockets, last.processes = sockets, procs
            last.socket_changes.clear()
        else:
            self._frame(Frame(at, "snapshot", (self._snapshot_text(sockets, procs),)), change)
        self.sockets, self.procs = dict(sockets), dict(procs)

    def _snapshot_text(self, sockets: dict[str, Socket], procs: dict[str, ProcessInfo]) -> str:
        """What a snapshot frame shows that the events had not: in words."""
        counts = f"{_plural(len(sockets), 'socket')}, {_plural(len(procs), 'lab process')}"
        if self.snapshots == 1:
            return f"the tables as first recorded: {counts}"
        before = self.sockets
        parts = []
        added = sum(1 for k in sockets if k not in before)
        gone = sum(1 for k in before if k not in sockets)
        changed = sum(1 for k, s in sockets.items() if k in before and before[k] != s)
        if added or gone:
            parts.append(f"{added} socket(s) the events had not shown, {gone} gone unseen")
        if changed:
            parts.append(f"{changed} socket(s) with new queues or counters")
        if procs != self.procs:
            parts.append("the lab processes' CPU or state")
        return f"snapshot ({counts}): " + "; ".join(parts or ["no change"])

    def _process(self, entry: Entry) -> None:
        data = entry.get("data")
        if not isinstance(data, dict):
            raise ValueError("a process entry without data")
        name, pid = _text(data.get("name")), _whole(data.get("pid"))
        if name is None or pid is None:
            raise ValueError("a process entry without a name or a pid")
        at = _number(data.get("at")) or _number(entry.get("at")) or self._last_at()
        kind = entry.get("kind")
        event: ReplayEvent
        if kind == "started":
            argv, program = _strings(data.get("argv")), _text(data.get("program"))
            event = ProcessStarted(name, pid, argv, program, at, _text(data.get("replaced")))
            info = ProcessInfo(
                name=name,
                pid=pid,
                argv=argv,
                program=program,
                args=_args_of(argv, program),
                state="running",
                returncode=None,
                cpu_percent=None,
                started_at=at,
                ended_at=None,
                stop_requested=False,
                output=(),
            )
            command = shlex.join([program, *info.args]) if program else shlex.join(argv)
            text = event.describe(command)
        elif kind == "exited":
            returncode = _whole(data.get("returncode"))
            state = _text(data.get("state")) or f"exited {returncode}"
            requested = data.get("requested") is True
            event = ProcessExited(
                name,
                pid,
                returncode if returncode is not None else 0,
                state,
                requested,
                at,
                _text(data.get("reason")),
                _text(data.get("explanation")),
            )
            known = self.procs.get(name)
            info = dataclasses.replace(
                known if known is not None else _process_info({"name": name, "pid": pid}),
                state=state,
                returncode=returncode,
                cpu_percent=None,
                ended_at=at,
                stop_requested=requested,
            )
            text = event.describe()
        else:
            return  # an output line: not part of the tables
        self.procs[name] = info
        change = _Change(process_changes=[info])
        self._frame(Frame(at, "process", (text,), process_events=(event,)), change)


def _process_info(data: Any) -> ProcessInfo:
    """A lab process of a snapshot line (:func:`app.core.record.process_json`)."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError("a snapshot's process without a name")
    return ProcessInfo(
        name=data["name"],
        pid=_whole(data.get("pid")),
        argv=_strings(data.get("argv")),
        program=_text(data.get("program")),
        args=_strings(data.get("args")),
        state=_text(data.get("state")) or "running",
        returncode=_whole(data.get("returncode")),
        cpu_percent=_number(data.get("cpu_percent")),
        started_at=_number(data.get("started_at")),
        ended_at=_number(data.get("ended_at")),
        stop_requested=data.get("stop_requested") is True,
        output=(),
    )


# -- playing it ---------------------------------------------------------------------------
def counts_text(snapshot: Snapshot) -> str:
    """``2 LISTEN · 1 ESTABLISHED · 0 TIME_WAIT · 1 UDP`` (other TCP states when any)."""
    counts = snapshot.counts()
    main = ("LISTEN", "ESTABLISHED", "TIME_WAIT", "UDP")
    parts = [f"{counts.get(s, 0)} {s}" for s in main]
    other = sum(n for s, n in counts.items() if s not in main)
    if other:
        parts.append(f"{other} other")
    return " · ".join(parts)


def frame_lines(timeline: Timeline) -> Iterable[str]:
    """The record as text: a header, then one line per frame (time, frame, counts, what
    happened), every control character escaped."""
    yield printable(f"# {timeline.summary()}")
    for note in timeline.notes:
        yield printable(f"# {note}")
    width = len(str(len(timeline)))
    for i, frame in enumerate(timeline.frames):
        snap, procs = timeline.state(i)
        running = sum(1 for p in procs if p.running)
        lab = f" · {running} lab process(es) running" if procs else ""
        what = "; ".join(frame.texts)
        yield printable(
            f"{clock_text(frame.at)}  {i + 1:>{width}}/{len(timeline)}  "
            f"{counts_text(snap)}{lab}  {what}"
        )
