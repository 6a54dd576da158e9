"""Running nmap: one :class:`Scan` that can be watched and cancelled, and :func:`run_scan`.

nmap runs under ``subprocess.Popen`` with an argv list, stdin from
/dev/null and a session of its own; two threads drain its stdout (feeding
the progress lines to a tracker) and stderr while the scanning thread
watches the clock and the cancel flag. However the scan ends, nmap's whole
process group is killed and reaped before the scan returns; then its XML is
read and joined with this machine's sockets into a :class:`ScanResult`.

From a lab host (``request.origin``), the same argv runs after ``ip netns
exec NS`` (which execs nmap in place, so the pid and the process group stay
nmap's), and the join reads the sockets of the lab hosts that were scanned,
each inside its own namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO

from app.core.model import Snapshot
from app.core.scan.join import is_local_address, join_listeners
from app.core.scan.nmap_xml import NmapXmlError, _ParsedHost, _ProgressTracker, parse_nmap_xml
from app.core.scan.origin import OriginError
from app.core.scan.request import DEFAULT_TIMEOUT, ScanRequest, build_command
from app.core.scan.results import HostResult, PortResult, ScanProgress, ScanResult
from app.core.scan.types import NMAP_MISSING, NmapNotFound, ScanStatus, check_type, find_nmap
from app.core.sockets import SocketSource
from app.core.targets import ScanError

_TICK = 0.05  # seconds between looks at nmap, the cancel flag and the clock
_PROGRESS_EVERY = 0.25  # seconds between progress reports when only the clock moved
_TERM_GRACE = 0.5  # seconds nmap gets to exit on SIGTERM before SIGKILL
_HARD_GRACE = 1.0  # seconds past the timeout before nmap is killed (its own host timeout first)


def _exited(pid: int) -> bool:
    """Has the child ended? Does not reap it, so its process group stays reserved."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End nmap and anything in its process group, then reap it.

    The leader is not reaped until the group has had its SIGKILL: a zombie
    leader keeps the group id from being reused by an unrelated process.
    """
    if not _exited(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _TERM_GRACE
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _start_nmap(
    nmap: str, command: tuple[str, ...], prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``command`` with the nmap at path ``nmap``, in a session of its own.

    ``prefix`` (``/usr/bin/ip netns exec NS``) runs it inside a lab host.

    Raises:
        OSError: nmap could not be started.
    """
    return subprocess.Popen(
        [*prefix, nmap, *command[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: killed as one, deaf to our Ctrl-C
    )


def _drain(stream: IO[bytes], sink: list[bytes], feed: Callable[[str], None] | None) -> None:
    for line in iter(stream.readline, b""):
        sink.append(line)
        if feed is not None and b"<task" in line:
            feed(line.decode("utf-8", errors="replace"))


def _read_in_thread(
    stream: IO[bytes], sink: list[bytes], feed: Callable[[str], None] | None
) -> threading.Thread:
    """A started daemon thread that drains ``stream`` into ``sink`` (see :func:`_drain`)."""
    reader = threading.Thread(target=_drain, args=(stream, sink, feed), daemon=True)
    reader.start()
    return reader


def _end_nmap(proc: subprocess.Popen[bytes], readers: list[threading.Thread]) -> None:
    """Stop nmap's process group, let the readers finish, and close its pipes."""
    _stop_group(proc)
    for reader in readers:
        reader.join(timeout=2.0)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _first_line(err: str) -> str | None:
    for line in err.splitlines():
        line = line.strip()
        if line and line != "QUITTING!":
            return line
    return None


class Scan:
    """One nmap scan that can be watched and cancelled from another thread.

    Args:
        request: what to scan (validated).
        timeout: seconds the whole scan may take; nmap is killed after that.
        on_progress: called with a :class:`ScanProgress` in the scanning
            thread: when nmap reports, and every 0.25 s with the elapsed time.
        on_done: called with the :class:`ScanResult` in the scanning thread.
        cancel_event: a shared event that cancels the scan when set
            (default: a private one; :meth:`cancel` sets it either way).
        source: where the local sockets come from (default: a fresh
            ``ProcNetSource``; do not share one that another thread polls).
            From a lab host: one whose sockets carry their hosts (default:
            the scanned hosts', read inside their namespaces).
        local_addresses: this machine's addresses (default: from its interfaces).
    """

    def __init__(
        self,
        request: ScanRequest,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_progress: Callable[[ScanProgress], None] | None = None,
        on_done: Callable[[ScanResult], None] | None = None,
        cancel_event: threading.Event | None = None,
        source: SocketSource | None = None,
        local_addresses: Iterable[str] | None = None,
    ) -> None:
        if not timeout > 0:
            raise ScanError(f"a scan timeout is more than 0 seconds, not {timeout}")
        self.request = request
        self.timeout = timeout
        self._on_progress = on_progress
        self._on_done = on_done
        self._cancel = cancel_event if cancel_event is not None else threading.Event()
        self._source = source
        self._local = list(local_addresses) if local_addresses is not None else None
        self._lock = threading.Lock()
        self._started = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: ScanResult | None = None
        self._failure: BaseException | None = None
        self._progress = ScanProgress(0.0, 0.0)
        self.pid: int | None = None  # nmap's pid once started (kept after it ends, for checks)
        self.command = build_command(request, timeout)
        origin = request.origin
        self.exec_prefix: tuple[str, ...] = () if origin is None else origin.exec_prefix
        self._ip: str | None = None  # the path of ip, found by preflight (from a lab host)

    @property
    def full_command(self) -> tuple[str, ...]:
        """What runs, as a student would type it: ``ip netns exec NS nmap ...``."""
        return (*self.exec_prefix, *self.command)

    # -- control ----------------------------------------------------------
    def preflight(self) -> str:
        """Check that nmap is installed and the type may run; return nmap's path.

        Raises:
            NmapNotFound, ScanTypeUnavailable, OriginError: one line in words.
        """
        nmap = find_nmap()
        if nmap is None:
            raise NmapNotFound(NMAP_MISSING)
        check_type(self.request.type)
        if self.request.origin is not None:
            self._ip = self.request.origin.check_usable()
        return nmap

    def run(self) -> ScanResult:
        """Run the scan in this thread and return its result (blocking).

        Raises:
            NmapNotFound, ScanTypeUnavailable: before nmap starts.
            RuntimeError: the scan was already started.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("this scan has already been started; make a new Scan")
            self._started = True
        try:
            result = self._execute()
            self._result = result
        except BaseException as exc:
            self._failure = exc
            self._done.set()
            raise
        self._done.set()
        if self._on_done is not None:
            self._on_done(result)
        return result

    def start(self) -> Scan:
        """Run the scan in a thread of its own; returns at once.

        nmap's presence and the type's availability are checked here, in the
        caller's thread, so those errors are raised by ``start()`` itself.
        """
        self.preflight()
        thread = threading.Thread(target=self._run_quietly, name="observatory-scan", daemon=True)
        self._thread = thread
        thread.start()
        return self

    def _run_quietly(self) -> None:
        # An exception is kept by run() for wait() to re-raise.
        with contextlib.suppress(BaseException):
            self.run()

    def cancel(self) -> None:
        """Ask the scan to stop (any thread, any time; harmless when it has ended)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> ScanResult | None:
        """Wait for the end of a started scan; its result, or None if still running.

        Re-raises an exception that ended the scan in its thread.
        """
        if not self._done.wait(timeout):
            return None
        if self._failure is not None:
            raise self._failure
        return self._result

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def result(self) -> ScanResult | None:
        return self._result

    @property
    def progress(self) -> ScanProgress:
        """The latest progress (safe to read from any thread)."""
        return self._progress

    # -- work ---------------------------------------------------------------
    def _report(self, progress: ScanProgress) -> None:
        self._progress = progress
        if self._on_progress is not None:
            self._on_progress(progress)

    def _result_of(
        self,
        started_at: float,
        duration: float,
        status: ScanStatus,
        error: str | None,
        hosts: tuple[HostResult, ...] = (),
        ports: tuple[PortResult, ...] = (),
    ) -> ScanResult:
        return ScanResult(
            target=self.request.target.text,
            type=self.request.type,
            ports=ports,
            started_at=started_at,
            duration=duration,
            command=self.command,
            error=error,
            status=status,
            hosts=hosts,
            requested_ports=self.request.ports,
            from_host=self.request.from_host,
            exec_prefix=self.exec_prefix,
        )

    def _execute(self) -> ScanResult:
        nmap = self.preflight()
        started_at = time.time()
        t0 = time.monotonic()
        if self._cancel.is_set():
            return self._result_of(
                started_at, 0.0, "cancelled", "the scan was cancelled before nmap started"
            )
        tracker = _ProgressTracker(self.request.type)
        out: list[bytes] = []
        err: list[bytes] = []
        readers: list[threading.Thread] = []
        prefix = () if self._ip is None else (self._ip, *self.exec_prefix[1:])
        try:
            proc = _start_nmap(nmap, self.command, prefix)
        except OSError as exc:
            why = f"could not start nmap: {exc.strerror or exc}"
            return self._result_of(started_at, time.monotonic() - t0, "failed", why)
        try:  # entered at once: from here on, any exception still ends nmap
            self.pid = proc.pid
            assert proc.stdout is not None and proc.stderr is not None
            readers.append(_read_in_thread(proc.stdout, out, tracker.feed))
            readers.append(_read_in_thread(proc.stderr, err, None))
            self._report(ScanProgress(0.0, 0.0, None, None, proc.pid))
            status = self._watch(proc.pid, t0, tracker)
        finally:
            # Whatever happened (even an exception in on_progress), nmap goes.
            _end_nmap(proc, readers)
        duration = time.monotonic() - t0
        return self._outcome(status, started_at, duration, tracker, proc.returncode, out, err)

    def _outcome(
        self,
        status: ScanStatus,
        started_at: float,
        duration: float,
        tracker: _ProgressTracker,
        returncode: int | None,
        out: list[bytes],
        err: list[bytes],
    ) -> ScanResult:
        """The result of a scan whose nmap has ended, with the last progress report."""
        percent, task, _, _ = tracker.take()
        if status in ("cancelled", "timeout"):
            self._report(ScanProgress(percent, duration, task, None, None))
            if status == "cancelled":
                why = f"the scan was cancelled after {duration:.1f} s"
            else:
                why = f"the scan took longer than {self.timeout:g} s and was stopped"
            return self._result_of(started_at, duration, status, why)
        if returncode is not None and returncode < 0:  # a signal we did not send
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            why = (
                f"nmap was killed by {name} after {duration:.1f} s, not by the observatory "
                "(another program, or the system short of memory); nothing it found is shown"
            )
            self._report(ScanProgress(percent, duration, task, None, None))
            return self._result_of(started_at, duration, "failed", why)
        result = self._parse(
            started_at,
            duration,
            returncode,
            b"".join(out).decode("utf-8", errors="replace"),
            b"".join(err).decode("utf-8", errors="replace"),
        )
        self._report(ScanProgress(100.0, duration, task, 0.0, None))
        return result

    def _watch(self, pid: int, t0: float, tracker: _ProgressTracker) -> ScanStatus:
        deadline = t0 + self.timeout + _HARD_GRACE
        last = time.monotonic()
        while True:
            if _exited(pid):
                return "done"
            if self._cancel.is_set():
                return "cancelled"
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            percent, task, remaining, changed = tracker.take()
            if changed or now - last >= _PROGRESS_EVERY:
                self._report(ScanProgress(percent, now - t0, task, remaining, pid))
                last = now
            self._cancel.wait(_TICK)

    def _parse(
        self,
        started_at: float,
        duration: float,
        returncode: int | None,
        xml_text: str,
        err_text: str,
    ) -> ScanResult:
        problem = _first_line(err_text)
        try:
            parsed = parse_nmap_xml(xml_text, self.request.ports)
        except NmapXmlError:
            why = problem or f"nmap ended with code {returncode} and wrote no results"
            return self._result_of(started_at, duration, "failed", f"nmap failed: {why}")
        if returncode not in (0, None) and not parsed:
            why = problem or f"it ended with code {returncode}"
            return self._result_of(started_at, duration, "failed", f"nmap failed: {why}")
        if not parsed:
            why = problem or "the name did not resolve to an address"
            return self._result_of(started_at, duration, "failed", f"nmap scanned no host: {why}")
        local = self._local
        snapshot = self._listeners(parsed)
        hosts, ports = join_listeners(
            parsed, self.request.type, snapshot, local, self.request.origin
        )
        timed_out = [h.address for h in hosts if h.timed_out]
        if timed_out:
            return self._result_of(
                started_at,
                duration,
                "timeout",
                f"nmap gave up on {', '.join(timed_out)} after its host timeout of "
                f"{self.timeout:g} s",
                hosts,
                ports,
            )
        return self._result_of(started_at, duration, "done", None, hosts, ports)

    def _listeners(self, parsed: Sequence[_ParsedHost]) -> Snapshot:
        """The sockets to join with: this machine's when it was scanned, or from a
        lab host, those of the lab hosts scanned (an empty snapshot when none is)."""
        snapshot = Snapshot(taken_at=time.time(), sockets=())
        origin = self.request.origin
        if origin is not None:
            owners = {origin.owner(h.address) for h in parsed if h.address}
            wanted = {o for o in owners if o is not None}
            if not wanted:
                return snapshot
            if self._source is not None:
                with contextlib.suppress(OSError):
                    return self._source.poll()
                return snapshot
            # A lab that ended meanwhile: results without listeners are still results.
            with contextlib.suppress(OriginError):
                snapshot = origin.poll(wanted)
            return snapshot
        if not any(h.address and is_local_address(h.address, self._local) for h in parsed):
            return snapshot
        source = self._source
        if source is None:
            from app.core.sockets import default_source

            source = default_source()
        # Without /proc, results without listeners are still results.
        with contextlib.suppress(OSError):
            snapshot = source.poll()
        return snapshot


def run_scan(
    request: ScanRequest,
    on_progress: Callable[[ScanProgress], None] | None = None,
    cancel_event: threading.Event | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    source: SocketSource | None = None,
) -> ScanResult:
    """Run one scan in this thread; see :class:`Scan` for the arguments.

    Raises:
        NmapNotFound, ScanTypeUnavailable: before nmap starts.
    """
    return Scan(
        request, timeout=timeout, on_progress=on_progress, cancel_event=cancel_event, source=source
    ).run()
