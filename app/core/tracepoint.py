"""Every TCP state transition, from the kernel tracepoint ``sock:inet_sock_set_state``.

sock_diag and /proc/net/tcp are samples: a connection that lives 20 ms
between two polls is never seen. The tracepoint (Linux 4.16+) fires on each
``tcp_set_state()``, and tracefs prints it as text; this module reads that
text through a tracefs *instance of our own* (``instances/observatory-<pid>``),
so we never touch the global trace buffer other tools (perf, trace-cmd) use.
No eBPF, stdlib only, root only. A line becomes a :class:`Transition` in
:mod:`app.core.tracepoint_parse`; this module runs the instance and reads it.

A real line (``trace_pipe`` of our instance, ``record-tgid`` on, clock ``mono``)::

    python3-3998    (   3997) [001] .....   292.940168: inet_sock_set_state: family=AF_INET
    protocol=IPPROTO_TCP sport=0 dport=40207 saddr=127.0.0.1 daddr=127.0.0.1
    saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT

(one line in the file). ``comm-tid (tgid) [cpu] flags timestamp``: the task that
was *running* when the state changed. For ``connect()``/``close()`` that is the
owner; for what the kernel does in softirq (the third flag is ``s``, e.g.
``..s2.``: LISTEN->SYN_RECV, ESTABLISHED->CLOSE_WAIT when a FIN arrives) it is
whichever task happened to be on the CPU, so :class:`Transition` says ``pid=None``
there. The comm and tgid come from caches tracefs fills when a task is next
scheduled out: a line read right away can show ``<...>`` and ``(-------)``;
:meth:`StateTracer.read` then asks ``/proc/<tid>/status``.

What the tracepoint does *not* show, and a student will ask about:

* ``TIME_WAIT`` never appears: entering it replaces the socket by a small
  timewait sock, and the tracepoint reports the old socket's end as
  ``FIN_WAIT1/FIN_WAIT2/CLOSING -> CLOSE``. (``FIN_WAIT2 -> CLOSE`` can also be
  an orphan lingering in FIN_WAIT2, again as a timewait sock.) Ask sock_diag
  whether the 4-tuple is now in TIME_WAIT.
* ``NEW_SYN_RECV`` never appears either (a request sock, not a socket, answers
  the SYN). The server side shows up only when the handshake's last ACK
  creates the child socket: ``LISTEN -> SYN_RECV -> ESTABLISHED`` at once,
  with the listener's port as ``local_port``. The model's name for both is
  ``SYN_RECV``.
* ``CLOSE -> SYN_SENT`` carries ``sport=0``: connect() has not picked the port yet.

Cleanup: :meth:`StateTracer.close` disables the event and removes the
instance; it is idempotent, and also runs from ``atexit`` and from the caller's
signal handlers. A SIGKILLed run cannot clean up: :func:`remove_stale_instances`
(called by :meth:`StateTracer.start`) removes instances whose process is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import os
import re
import select
import time
from collections.abc import Iterable
from types import TracebackType

from app.core.tracepoint_parse import Transition, lost_events, parse_line, parse_with_lookup

__all__ = [
    "TRACEFS",
    "StateTracer",
    "TraceUnavailable",
    "Transition",
    "available",
    "parse_line",
    "remove_stale_instances",
]

TRACEFS = "/sys/kernel/tracing"
EVENT = "events/sock/inet_sock_set_state"
INSTANCE_PREFIX = "observatory-"
_INSTANCE_NAME = re.compile(r"observatory-(\d+)(?:-\d+)?\Z")
# More ports than this and the kernel filter only keeps TCP; we filter the rest here.
_MAX_FILTER_PORTS = 64
_READ_SIZE = 1 << 16

NEEDS_ROOT = (
    "every transition needs root (the kernel's tracepoint sock:inet_sock_set_state);"
    " as another user the observatory sees closes and once-a-second samples"
)


class TraceUnavailable(Exception):
    """The tracepoint cannot be read here; the message is one line for a student."""


def _task(tid: int) -> tuple[int, str] | None:
    """(process id, comm) of a thread, from /proc; None once it has gone."""
    try:
        with open(f"/proc/{tid}/status", encoding="utf-8", errors="replace") as f:
            text = f.read(4096)
    except OSError:
        return None
    name = tgid = None
    for row in text.splitlines():
        key, _, value = row.partition(":")
        if key == "Name":
            name = value.strip()
        elif key == "Tgid":
            tgid = value.strip()
    if name is None or tgid is None or not tgid.isdigit():
        return None
    return int(tgid), name


# --------------------------------------------------------------------------- tracefs


def _tracefs_mount() -> str | None:
    """Where a tracefs is mounted (ours, /sys/kernel/tracing, first), or None."""
    found: list[str] = []
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for row in f:
                parts = row.split()
                if len(parts) >= 3 and parts[2] == "tracefs":
                    found.append(parts[1].replace("\\040", " "))
    except OSError:
        return None
    if TRACEFS in found:
        return TRACEFS
    return found[0] if found else None


def _kernel_has_tracefs() -> bool:
    try:
        with open("/proc/filesystems", encoding="utf-8") as f:
            return any(row.split()[-1:] == ["tracefs"] for row in f)
    except OSError:
        return False


def _kernel_has_event() -> bool | None:
    """Whether the kernel was built with the tracepoint; None when we cannot tell."""
    try:
        with open("/proc/kallsyms", encoding="utf-8") as f:
            return any(
                row.rstrip().endswith(" __traceiter_inet_sock_set_state")
                or row.rstrip().endswith(" trace_event_raw_event_inet_sock_set_state")
                for row in f
            )
    except OSError:
        return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_tracefs() -> None:
    """``mount -t tracefs nodev /sys/kernel/tracing``, as perf does."""
    libc = _libc()
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    if libc.mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), TRACEFS)


def _umount_tracefs() -> None:
    libc = _libc()
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    if libc.umount2(TRACEFS.encode(), 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), TRACEFS)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie will never clean up)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return bool(fields) and fields[0] not in ("Z", "X", "x")


def _remove_instance(path: str) -> bool:
    """Remove an instance; False if the kernel refused (EBUSY: its trace_pipe is open).

    Nothing is written into it first: an instance that only looks stale (its pid
    read in another PID namespace) may belong to a live observatory, and disabling
    its event would blind it; the kernel disables the events of what it removes.
    """
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY: someone still has its trace_pipe open
        return False
    return True


def remove_stale_instances(root: str = TRACEFS) -> list[str]:
    """Remove ``instances/observatory-<pid>`` left by runs that were killed; their paths.

    A run that got SIGKILL could not remove its instance (its ring buffer stays
    allocated, the event enabled). Removed: those whose pid is not a live process,
    and those named after *our* pid that no tracer of this process holds (a
    previous process had this pid). Nothing happens when tracefs is not mounted at
    ``root`` (instances outlive an unmount: :meth:`StateTracer.start` mounts first).
    The pid is read in our PID namespace: tracefs is one for the whole machine, so a
    run in another PID namespace sharing it would look dead from here.
    """
    instances = os.path.join(root, "instances")
    try:
        names = sorted(os.listdir(instances))
    except OSError:
        return []
    held = {t._instance for t in _live if t._instance}
    removed: list[str] = []
    for name in names:
        match = _INSTANCE_NAME.match(name)
        if match is None:
            continue
        path = os.path.join(instances, name)
        pid = int(match[1])
        # Our own pid: a previous process had it, unless one of our tracers holds it.
        stale = path not in held if pid == os.getpid() else not _process_alive(pid)
        if stale and _remove_instance(path):
            removed.append(path)
    return removed


def available() -> str | None:
    """None when :meth:`StateTracer.start` should work here, else why not, in words.

    No side effects: nothing is mounted or created to find out.
    """
    return _reason(probe_kallsyms=True)


def _reason(probe_kallsyms: bool) -> str | None:
    if os.geteuid() != 0:
        return NEEDS_ROOT
    mount = _tracefs_mount()
    if mount is not None:
        if not os.path.isdir(os.path.join(mount, EVENT)):
            return _NO_EVENT
        return None
    if not _kernel_has_tracefs() or not os.path.isdir(TRACEFS):
        return _NO_TRACEFS
    # Without tracefs mounted, the kernel's symbols tell (start() mounts, then looks).
    if probe_kallsyms and _kernel_has_event() is False:
        return _NO_EVENT
    return None


_NO_TRACEFS = (
    "every transition needs tracefs, which this kernel does not offer;"
    " the observatory sees closes and once-a-second samples"
)
_NO_EVENT = (
    "every transition needs the kernel's tracepoint sock:inet_sock_set_state"
    " (Linux 4.16 or newer), which this kernel lacks; the observatory sees closes"
    " and once-a-second samples"
)


# --------------------------------------------------------------------------- tracer

_live: set[StateTracer] = set()
# The tracefs mount we made in this process (None: it was there already, or not yet).
_mounted_by_us: str | None = None


def _close_all() -> None:
    for tracer in list(_live):
        tracer.close()


atexit.register(_close_all)


class StateTracer:
    """Our own tracefs instance with ``sock:inet_sock_set_state`` enabled, read as text.

    ``ports``: keep transitions whose local or remote port is one of them; empty:
    every TCP transition of the machine. The tracepoint is not per network
    namespace: a lab host's namespace shows up too, with nothing in the line to
    tell it apart. Use it as a context manager, or call :meth:`start` and
    :meth:`close`; ``select`` on :meth:`fileno`, then :meth:`read`.
    """

    def __init__(self, ports: Iterable[int] = ()) -> None:
        self.ports: frozenset[int] = frozenset(int(p) for p in ports)
        bad = sorted(p for p in self.ports if not 0 < p < 65536)
        if bad:
            raise ValueError(f"not a TCP port: {bad[0]}")
        self.stale_removed: list[str] = []  # instances of killed runs that start() removed
        self.lost = 0  # events the kernel dropped (its buffer was full)
        self._instance: str | None = None
        self._fd = -1
        self._owner_pid = 0
        self._pending = b""

    @property
    def instance(self) -> str | None:
        """Our instance's folder while started (``.../instances/observatory-<pid>``)."""
        return self._instance

    # -- life cycle

    def start(self) -> None:
        """Create the instance, enable the event, open its trace_pipe.

        Raises :class:`TraceUnavailable` (one line, for a student) when it cannot.
        """
        if self._instance is not None:
            return
        reason = _reason(probe_kallsyms=False)
        if reason is not None:
            raise TraceUnavailable(reason)
        root = self._tracefs()
        self.stale_removed = remove_stale_instances(root)
        self._owner_pid = os.getpid()
        _live.add(self)
        try:
            self._instance = self._make_instance(root)
            self._configure(self._instance)
            self._fd = os.open(
                os.path.join(self._instance, "trace_pipe"),
                os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC,
            )
        except OSError as exc:
            self.close()
            raise TraceUnavailable(
                f"could not set up the tracepoint sock:inet_sock_set_state"
                f" ({exc.strerror or exc}); the observatory sees closes and"
                f" once-a-second samples"
            ) from None

    @staticmethod
    def _tracefs() -> str:
        global _mounted_by_us
        mount = _tracefs_mount()
        if mount is not None:
            return mount
        try:
            _mount_tracefs()
        except OSError as exc:
            raise TraceUnavailable(
                f"every transition needs tracefs, and mounting it on {TRACEFS} failed"
                f" ({exc.strerror}); the observatory sees closes and once-a-second samples"
            ) from None
        _mounted_by_us = TRACEFS
        if not os.path.isdir(os.path.join(TRACEFS, EVENT)):
            _release_mount()
            raise TraceUnavailable(_NO_EVENT)
        return TRACEFS

    def _make_instance(self, root: str) -> str:
        base = os.path.join(root, "instances", f"{INSTANCE_PREFIX}{os.getpid()}")
        for n in range(1, 1000):  # several tracers in one process: -2, -3...
            path = base if n == 1 else f"{base}-{n}"
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            return path
        raise OSError(errno.EEXIST, "too many instances", base)

    def _configure(self, instance: str) -> None:
        _write(os.path.join(instance, "trace_clock"), "mono")
        for option, value in (("record-tgid", "1"), ("irq-info", "1")):
            with contextlib.suppress(OSError):  # older kernels: parse what is there
                _write(os.path.join(instance, "options", option), value)
        _write(os.path.join(instance, EVENT, "filter"), self._filter())
        _write(os.path.join(instance, EVENT, "enable"), "1")

    def trouble(self) -> str | None:
        """Why the instance no longer reports (someone switched it off), or None.

        Another program may write ``0`` to our instance's ``tracing_on`` or to the
        event's ``enable`` (a tracing tool resetting every instance): the pipe then
        stays open and silent. Two small reads; call it now and then.
        """
        instance = self._instance
        if instance is None or self._fd < 0:
            return None
        for name, path in (
            ("tracing_on", os.path.join(instance, "tracing_on")),
            (f"{EVENT}/enable", os.path.join(instance, EVENT, "enable")),
        ):
            try:
                with open(path, encoding="ascii", errors="replace") as handle:
                    value = handle.read(16).strip()
            except OSError as exc:
                return f"the tracing instance {instance} cannot be read ({exc.strerror or exc})"
            if not value.startswith("1"):
                return f"another program switched off the tracing instance ({name} is {value})"
        return None

    def _filter(self) -> str:
        if not self.ports or len(self.ports) > _MAX_FILTER_PORTS:
            return "protocol==6"
        either = " || ".join(f"sport=={p} || dport=={p}" for p in sorted(self.ports))
        return f"protocol==6 && ({either})"

    def close(self) -> None:
        """Stop, remove our instance, unmount tracefs if we mounted it. Idempotent.

        Safe from a signal handler that interrupts another close() or read():
        each step is done once and only marked done after it succeeded. In a
        forked child only the file descriptor is closed: the instance is the parent's.
        """
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._owner_pid != os.getpid():
            self._instance = None
            _live.discard(self)
            return
        if self._instance is not None and _remove_instance(self._instance):
            self._instance = None
        if self._instance is None:
            _live.discard(self)
            if not _live:
                _release_mount()

    def __enter__(self) -> StateTracer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading

    def fileno(self) -> int:
        """The trace_pipe to select/poll on (readable: call :meth:`read`)."""
        if self._fd < 0:
            raise ValueError("the tracer is not started, or closed")
        return self._fd

    def read(self, timeout: float) -> list[Transition]:
        """What arrived, waiting at most ``timeout`` seconds for the first of it.

        Returns [] when nothing came (or once closed). Lines the kernel filter let
        through for another protocol, and the port filter beyond 64 ports, are
        filtered here.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        poller = select.poll()
        fd = self._fd
        if fd < 0:
            return []
        poller.register(fd, select.POLLIN)
        while True:
            data = self._drain(fd)
            if data:
                found = self._transitions(data)
                if found:
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._fd != fd:
                return []
            try:
                events = poller.poll(max(1, int(remaining * 1000)))
            except InterruptedError:
                continue
            if any(mask & (select.POLLNVAL | select.POLLERR) for _, mask in events):
                return []

    def _drain(self, fd: int) -> bytes:
        chunks = [self._pending]
        while True:
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError:  # closed under us (another thread, a signal handler)
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        complete, newline, rest = data.rpartition(b"\n")
        if not newline:
            self._pending = data
            return b""
        self._pending = rest
        return complete

    def _transitions(self, data: bytes) -> list[Transition]:
        offset = time.time() - time.monotonic()
        tasks: dict[int, tuple[int, str] | None] = {}
        out: list[Transition] = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            parsed = parse_with_lookup(line, offset)
            if parsed is None:
                self.lost += lost_events(line)
                continue
            transition, lookup, guessed = parsed
            if self.ports and not (
                transition.local_port in self.ports or transition.remote_port in self.ports
            ):
                continue
            if lookup is not None:
                if lookup not in tasks:
                    tasks[lookup] = _task(lookup)
                task = tasks[lookup]
                if task is not None:
                    transition = _with_owner(transition, *task)
                elif guessed:  # the thread is gone: its id is no process's pid
                    transition = _with_owner(transition, None, None)
            out.append(transition)
        return out


def _with_owner(t: Transition, pid: int | None, process: str | None) -> Transition:
    return Transition(
        at=t.at,
        proto=t.proto,
        local_addr=t.local_addr,
        local_port=t.local_port,
        remote_addr=t.remote_addr,
        remote_port=t.remote_port,
        old_state=t.old_state,
        new_state=t.new_state,
        pid=pid,
        process=(t.process or process) if pid is not None else None,
    )


def _release_mount() -> None:
    """Unmount tracefs if this process mounted it and nothing else uses it now.

    Not when instances remain (another observatory, perf, a student's own): the
    kernel would keep them, but their owners would lose their files. A run that
    was SIGKILLed leaves its mount behind; that is harmless (perf leaves it too)
    and the next start reuses it.
    """
    global _mounted_by_us
    mount = _mounted_by_us
    if mount is None or _tracefs_mount() != mount:
        _mounted_by_us = None
        return
    try:
        if os.listdir(os.path.join(mount, "instances")):
            return
        _umount_tracefs()
    except OSError:  # EBUSY: a file on it is open; leave it mounted
        return
    _mounted_by_us = None
