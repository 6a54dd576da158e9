"""Record a lab session as JSON Lines, and turn it into handouts.

A :class:`SessionRecorder` appends one JSON object per line to
``<sessions dir>/<YYYYmmdd-HHMMSS>.jsonl``: socket events (from
:func:`app.core.diff.diff`), process events (any dict: started, output,
exited...) and the teacher's notes. Each line goes to the kernel with one
``write()`` on an ``O_APPEND`` descriptor as soon as it is recorded, so a
crash (even ``kill -9``) loses nothing already recorded; at most a line being
written is cut short, and :func:`read_session` skips such a line.

Where the files go (first that applies):

1. the ``directory`` argument (the files go right there);
2. ``$OBSERVATORY_DATA_DIR/sessions``;
3. ``$XDG_DATA_HOME/connection-observatory/sessions`` (an absolute path only,
   as the XDG spec says);
4. ``~/.local/share/connection-observatory/sessions``.

When 3 or 4 cannot be created or written (a user with no home, like nobody's
``/nonexistent``), the recorder quietly uses the first of these that works and
says so in :attr:`SessionRecorder.note`:

5. ``$XDG_RUNTIME_DIR/connection-observatory/sessions`` (when that folder is
   absolute and the user's own);
6. ``<system temp dir>/connection-observatory-<uid>/sessions``, private:
   mode 0700 and owned by the user; a folder of that name that someone else
   owns, or that others may enter, is refused, never used.

Recording never crashes the app: :meth:`SessionRecorder.start` raises
:class:`RecordError` (an ``OSError`` turned into one line of words) when the
directory cannot be written, and once started the ``record_*`` methods return
False and keep that line in :attr:`SessionRecorder.warning` instead of raising.

Line format (``"type"`` says which; all have ``at``, seconds since the epoch,
and ``time``, local ISO-8601)::

    {"type": "session", "format": 2, "started": ...}               first line
    {"type": "socket", "kind": "listener-opened", "key": ..., "text": describe(),
     "event_at": ..., "old_state": ..., "new_state": ..., "socket": Socket.to_json()}
    {"type": "process", "kind": "exited", "data": {...}}
    {"type": "note", "text": "..."}
    {"type": "snapshot", "taken_at": ..., "sockets": [...], "cmdlines": {...},
     "processes": [...]}

Format 2 adds the ``snapshot`` lines: every socket of one poll and the lab
processes, so that a replay (:mod:`app.core.replay`) can rebuild the tables at
any moment, not only the changes. The first poll is always written, then at
most one every :data:`SNAPSHOT_EVERY` seconds, and only when something differs
from the last one written; a machine with many sockets writes them further
apart (:data:`SNAPSHOT_BYTES_PER_SECOND`), so a record stays small. In a
snapshot a socket is its :meth:`Socket.to_json` without the keys that hold the
default (None, an empty command line, queues of 0, owner ``process``); the
command line of each pid is written once, in ``cmdlines``; ``key`` is given
only where the table's key is not the socket's own (two ``SO_REUSEPORT``
listeners). Format 1 files have no snapshots: a replay of one rebuilds from the
events alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.model import Snapshot, Socket, SocketEvent
from app.core.small_files import read_limited

if TYPE_CHECKING:
    from app.core.procs import ProcessInfo

APP_DIR_NAME = "connection-observatory"
FORMAT_VERSION = 2
# A full snapshot of the tables goes into the record at most this often (seconds)...
SNAPSHOT_EVERY = 10.0
# ...and, for a machine with many sockets, no more than this many bytes a second on average.
SNAPSHOT_BYTES_PER_SECOND = 2000.0
ENV_DATA_DIR = "OBSERVATORY_DATA_DIR"
MAX_RECORD_BYTES = 256 * 2**20  # what read_session reads at most

Entry = dict[str, Any]


class RecordError(Exception):
    """Recording is impossible here; ``str()`` is one line of words for the user."""


def sessions_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The directory session files go to when no directory is given.

    Args:
        env: the environment to read (default ``os.environ``).
        home: the home directory (default ``$HOME`` of ``env``, else ``Path.home()``).
    """
    env = os.environ if env is None else env
    override = env.get(ENV_DATA_DIR, "").strip()
    if override:
        return Path(override).expanduser() / "sessions"
    xdg = env.get("XDG_DATA_HOME", "").strip()
    # The XDG spec: a relative path is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_DIR_NAME / "sessions"
    if home is None:
        return _home_sessions(env)
    return home / ".local" / "share" / APP_DIR_NAME / "sessions"


def _home_sessions(env: Mapping[str, str]) -> Path:
    given = env.get("HOME", "").strip()
    home = Path(given) if given and os.path.isabs(given) else Path.home()
    return home / ".local" / "share" / APP_DIR_NAME / "sessions"


def fallback_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where sessions go when the default folder cannot be written, in order."""
    env = os.environ if env is None else env
    out: list[Path] = []
    runtime = env.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and os.path.isabs(runtime):
        out.append(Path(runtime) / APP_DIR_NAME / "sessions")
    out.append(Path(tempfile.gettempdir()) / f"{APP_DIR_NAME}-{os.geteuid()}" / "sessions")
    return out


def _own_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or accept it only if it is ours and private.

    Raises:
        RecordError: someone else owns it, others may enter it, or it is not a folder.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise RecordError(f"{path} is not a folder (a link or a file): not recording there")
    if info.st_uid != os.geteuid():
        raise RecordError(
            f"{path} belongs to another user (uid {info.st_uid}): not recording there"
        )
    if info.st_mode & 0o077:
        raise RecordError(
            f"others may enter {path} (mode {stat.S_IMODE(info.st_mode):o}): not recording there"
        )


def _prepare_fallback(folder: Path, env: Mapping[str, str]) -> None:
    """Make a fallback folder: the runtime dir must be ours; the temp one private."""
    runtime = env.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and folder.is_relative_to(runtime):
        try:
            owner = os.stat(runtime).st_uid
        except OSError as exc:
            raise RecordError(in_words(exc, "use", Path(runtime))) from None
        if owner != os.geteuid():
            raise RecordError(f"{runtime} belongs to another user: not recording there")
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordError(in_words(exc, "create the session folder", folder)) from None
        return
    try:
        _own_private_dir(folder.parent)
        _own_private_dir(folder)
    except OSError as exc:
        raise RecordError(in_words(exc, "create the session folder", folder)) from None


def in_words(exc: OSError, what: str, path: Path) -> str:
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.ENOTDIR: "a part of the path is a file, not a directory",
        errno.ENOENT: "no such file or folder",
        errno.EISDIR: "it is a directory",
    }
    reason = reasons.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return f"cannot {what} {path}: {reason}"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")


def _jsonable(value: object) -> object:
    """Anything a process event may carry, as something JSON can hold."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return _jsonable(to_json())
    return str(value)


class SessionRecorder:
    """Appends a session's events to one ``.jsonl`` file, a line at a time.

    Use :meth:`start` to create one (it may raise :class:`RecordError`); the
    ``record_*`` methods never raise. Safe to call from several threads.
    """

    def __init__(self, path: Path, fd: int, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._fd: int | None = fd
        self._clock = clock
        self._lock = threading.Lock()
        self.lines_written = 0
        self.snapshots_written = 0
        self.bytes_written = 0
        self.warning: str | None = None  # the last failure, in words; None = all well
        self.snapshot_every = SNAPSHOT_EVERY  # seconds between snapshots, at least
        self.snapshot_budget = SNAPSHOT_BYTES_PER_SECOND  # and bytes a second, on average
        # The last snapshot written: when (its taken_at), its size, and what it held.
        self._snapshot_lock = threading.Lock()
        self._snapshot_at: float | None = None
        self._snapshot_gap = 0.0  # a big snapshot spaces the next one out (bytes per second)
        self._snapshot_held: tuple[dict[str, Socket], list[dict[str, object]]] | None = None
        # Set when the default folder could not be used: where it records instead, and why.
        self.note: str | None = None

    @classmethod
    def start(
        cls,
        directory: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        env: Mapping[str, str] | None = None,
    ) -> SessionRecorder:
        """Create the directory and a new ``<YYYYmmdd-HHMMSS>.jsonl`` in it.

        Args:
            directory: where the file goes; default :func:`sessions_dir`.
            clock: seconds since the epoch (tests pass a fixed one).
            env: environment for :func:`sessions_dir` (default ``os.environ``).

        Raises:
            RecordError: the directory cannot be created or written (one line).
        """
        chosen = env if env is not None else os.environ
        folder = Path(directory).expanduser() if directory is not None else sessions_dir(chosen)
        try:
            if directory is None and folder == _home_sessions(chosen):
                home = folder.parents[3]
                if not home.is_dir():  # never create a home folder (nobody's /nonexistent)
                    raise RecordError(
                        f"cannot create the session folder {folder}: the home folder {home} "
                        "does not exist"
                    )
            recorder = cls._open_in(folder, clock)
        except RecordError as exc:
            # An explicit folder is the user's choice: say it failed. The default
            # one (a home that does not exist) quietly falls back.
            if directory is not None or chosen.get(ENV_DATA_DIR, "").strip():
                raise
            problems = [str(exc)]
            for other in fallback_dirs(chosen):
                try:
                    _prepare_fallback(other, chosen)
                    recorder = cls._open_in(other, clock)
                except RecordError as again:
                    problems.append(str(again))
                    continue
                recorder.note = f"recording in {other} ({problems[0]})"
                return recorder
            raise RecordError("; ".join(problems)) from None
        return recorder

    @classmethod
    def _open_in(cls, folder: Path, clock: Callable[[], float]) -> SessionRecorder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordError(in_words(exc, "create the session folder", folder)) from None
        now = clock()
        stem = datetime.fromtimestamp(now).strftime("%Y%m%d-%H%M%S")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        # Two sessions started in the same second get -2, -3...: never overwrite one.
        for n in range(1, 1000):
            path = folder / (f"{stem}.jsonl" if n == 1 else f"{stem}-{n}.jsonl")
            try:
                fd = os.open(path, flags, 0o600)  # yours: owners and command lines
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise RecordError(in_words(exc, "write a session file in", folder)) from None
        else:
            raise RecordError(f"cannot write a session file in {folder}: too many sessions")
        recorder = cls(path, fd, clock)
        header = {"type": "session", "format": FORMAT_VERSION, "started": _iso(now)}
        if not recorder._write(header):
            recorder.close()
            raise RecordError(recorder.warning or f"cannot write {path}")
        return recorder

    @property
    def ok(self) -> bool:
        """True while every line so far was written."""
        return self.warning is None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _write(self, entry: Entry) -> bool:
        return self._write_line(self._line(entry))

    def _line(self, entry: Entry) -> bytes:
        at = self._clock()
        line = {"type": entry.pop("type"), "at": round(at, 6), "time": _iso(at), **entry}
        return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    def _write_line(self, data: bytes) -> bool:
        with self._lock:
            if self._fd is None:
                self.warning = f"the session file {self.path} is already closed"
                return False
            try:
                # One write() per line on an O_APPEND descriptor: the kernel has the
                # line as soon as this returns, so a crash after it loses nothing.
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as exc:
                self.warning = in_words(exc, "write", self.path)
                return False
            self.lines_written += 1
            self.bytes_written += len(data)
            return True

    def record_event(self, event: SocketEvent) -> bool:
        """One socket event: kind, key, ``describe()`` and the socket's JSON."""
        return self._write(
            {
                "type": "socket",
                "kind": event.kind,
                "key": event.key,
                "text": event.describe(),
                "event_at": event.at,
                "old_state": event.old_state,
                "new_state": event.new_state,
                "socket": event.socket.to_json(),
            }
        )

    def record_events(self, events: Iterable[SocketEvent]) -> int:
        """Every event given; returns how many were written."""
        return sum(1 for e in events if self.record_event(e))

    def record_process(self, data: Mapping[str, object], kind: str | None = None) -> bool:
        """A process event: any mapping (pid, name, exit code, output line...).

        Args:
            data: what happened; values that JSON cannot hold become strings.
            kind: a short word (``started``, ``output``, ``exited``); default
                ``data["kind"]``, else ``"process"``.
        """
        payload = _jsonable(data)
        assert isinstance(payload, dict)
        name = kind if kind is not None else str(payload.get("kind", "process"))
        return self._write({"type": "process", "kind": name, "data": payload})

    def record_snapshot(self, snapshot: Snapshot, processes: Iterable[ProcessInfo] = ()) -> bool:
        """Every socket of a poll and the lab processes, when one is due.

        The first call always writes; later ones write only once
        :attr:`snapshot_every` seconds (:data:`SNAPSHOT_EVERY`) of ``snapshot.taken_at``
        have passed since the last one written (longer after a big one: its bytes over
        :attr:`snapshot_budget`, :data:`SNAPSHOT_BYTES_PER_SECOND`), and only when the
        sockets or the processes differ from it. Cheap when not due: call it after every
        poll.

        Returns:
            True if a line was written.
        """
        with self._snapshot_lock:
            at = snapshot.taken_at
            last = self._snapshot_at
            gap = max(self._snapshot_gap, self.snapshot_every)
            if last is not None and 0 <= at - last < gap:
                return False
            procs = [process_json(p) for p in processes]
            held = self._snapshot_held
            if held is not None and held[0] == snapshot.by_key and held[1] == procs:
                return False  # nothing to add: checked again at the next poll
            data = self._line(snapshot_entry(snapshot, procs))
            if not self._write_line(data):
                return False
            self.snapshots_written += 1
            self._snapshot_at = at
            self._snapshot_held = (snapshot.by_key, procs)
            self._snapshot_gap = len(data) / self.snapshot_budget
            return True

    def record_note(self, text: str) -> bool:
        """A free-text note (the teacher's remark, an experiment's title)."""
        return self._write({"type": "note", "text": str(text)})

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten recorder must not leak its descriptor.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


# The keys a snapshot's socket always has; the others are left out when they hold what
# Socket.from_json assumes without them.
_ALWAYS = frozenset({"proto", "local_addr", "local_port", "state"})
_DEFAULTS: dict[str, object] = {"owner": "process", "recv_q": 0, "send_q": 0}


def compact_socket(
    sock: Socket, key: str, cmdlines: dict[str, list[str]] | None = None
) -> dict[str, object]:
    """A socket as a snapshot line holds it: :meth:`Socket.to_json` without defaults.

    Args:
        sock: the socket.
        key: its key in the snapshot's table (``Snapshot.by_key``); written only when
            it is not ``sock.key``.
        cmdlines: where the command line of each pid goes (once per pid); None keeps
            the command line in the socket.
    """
    out: dict[str, object] = {}
    for name, value in sock.to_json().items():
        if name in _ALWAYS:
            out[name] = value
        elif name == "cmdline":
            if not value:
                continue
            assert isinstance(value, list)
            if cmdlines is not None and sock.pid is not None:
                known = cmdlines.setdefault(str(sock.pid), value)
                if known == value:
                    continue
            out[name] = value
        elif value is not None and _DEFAULTS.get(name, ...) != value:
            out[name] = value
    if key != sock.key:
        out["key"] = key
    return out


def process_json(p: ProcessInfo) -> dict[str, object]:
    """A lab process as a snapshot line holds it (without its output)."""
    return {
        "name": p.name,
        "pid": p.pid,
        "program": p.program,
        "args": list(p.args),
        "argv": list(p.argv),
        "state": p.state,
        "returncode": p.returncode,
        "cpu_percent": None if p.cpu_percent is None else round(p.cpu_percent, 1),
        "started_at": p.started_at,
        "ended_at": p.ended_at,
        "stop_requested": p.stop_requested,
    }


def snapshot_entry(snapshot: Snapshot, processes: list[dict[str, object]]) -> Entry:
    """The ``snapshot`` line of a poll (``processes`` as :func:`process_json` made them)."""
    cmdlines: dict[str, list[str]] = {}
    sockets = [compact_socket(s, k, cmdlines) for k, s in snapshot.by_key.items()]
    return {
        "type": "snapshot",
        "taken_at": round(snapshot.taken_at, 6),
        "sockets": sockets,
        "cmdlines": cmdlines,
        "processes": processes,
    }


def try_start(
    directory: str | os.PathLike[str] | None = None,
    *,
    clock: Callable[[], float] = time.time,
    env: Mapping[str, str] | None = None,
) -> tuple[SessionRecorder | None, str | None]:
    """:meth:`SessionRecorder.start` without exceptions: (recorder, None) or (None, warning)."""
    try:
        return SessionRecorder.start(directory, clock=clock, env=env), None
    except RecordError as exc:
        return None, str(exc)


@dataclass(frozen=True, slots=True)
class SessionLog:
    """A session file read back: its entries, and how many lines were unreadable."""

    path: Path
    entries: tuple[Entry, ...]
    skipped: int  # lines that are not JSON objects (e.g. the last one cut by a crash)


def read_session(path: str | os.PathLike[str]) -> SessionLog:
    """Read a ``.jsonl`` session; broken lines are counted, not fatal.

    Raises:
        RecordError: the file cannot be read (one line of words).
    """
    file = Path(path)
    try:
        raw = read_limited(file, MAX_RECORD_BYTES)  # (/dev/zero: answered at once)
    except OSError as exc:
        raise RecordError(in_words(exc, "read", file)) from None
    except ValueError:  # a NUL in the path
        raise RecordError(f"{str(file)!r} is not a file name (it holds a NUL)") from None
    if raw is None:
        raise RecordError(
            f"{file}: more than {MAX_RECORD_BYTES // 2**20} MiB: not a session record of "
            "this observatory (one of a whole day is a few tens of MiB)"
        )
    entries: list[Entry] = []
    skipped = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):  # broken, or [[[[...]]]] thousands deep
            skipped += 1
            continue
        if isinstance(entry, dict) and "type" in entry:
            entries.append(entry)
        else:
            skipped += 1
    return SessionLog(path=file, entries=tuple(entries), skipped=skipped)
