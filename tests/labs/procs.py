"""Helpers for lab tests: run lab programs as real processes, read their output by line."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = {
    "tcp-server": "app.labs.tcp_server",
    "tcp-client": "app.labs.tcp_client",
    "udp-server": "app.labs.udp_server",
    "udp-client": "app.labs.udp_client",
}


def lab_argv(program: str, *args: str) -> list[str]:
    return [sys.executable, "-m", MODULES[program], *args]


class LabProcess:
    """One lab program started as a real process, its stdout read line by line."""

    def __init__(
        self,
        program: str,
        *args: str,
        env: dict[str, str] | None = None,
        pass_fds: Collection[int] = (),
    ) -> None:
        full_env = dict(os.environ)
        # Exercise the parent guard's recorded-parent path in every test.
        full_env["OBSERVATORY_PARENT_PID"] = str(os.getpid())
        full_env.update(env or {})
        self.program = program
        self.proc = subprocess.Popen(
            lab_argv(program, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=full_env,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def next_line(self, timeout: float = 5.0) -> str | None:
        """The next line, or None at EOF; fails the test after ``timeout``."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.program}: no output within {timeout} s; so far {self.seen}")
        if line is not None:
            self.seen.append(line)
        return line

    def expect(self, prefix: str, timeout: float = 5.0) -> str:
        """Skip lines until one starts with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line is None:
                pytest.fail(
                    f"{self.program} ended before {prefix!r}; output {self.seen}, "
                    f"stderr {self.stderr_text()!r}"
                )
            if line.startswith(prefix):
                return line

    def no_line_for(self, seconds: float) -> None:
        """Fail if any line arrives within ``seconds``."""
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return
        pytest.fail(f"{self.program} printed {line!r} but should have stayed silent")

    def wait(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr_text(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Labs:
    """Starts lab programs and remembers them so that every one is killed afterwards."""

    def __init__(self) -> None:
        self.started: list[LabProcess] = []
        self.pids: list[int] = []  # grandchildren started through an intermediate parent

    def start(
        self,
        program: str,
        *args: str,
        env: dict[str, str] | None = None,
        pass_fds: Collection[int] = (),
    ) -> LabProcess:
        proc = LabProcess(program, *args, env=env, pass_fds=pass_fds)
        self.started.append(proc)
        return proc

    def server(self, program: str, *args: str) -> LabProcess:
        """Start a server and wait for its first line (it is ready then)."""
        proc = self.start(program, *args)
        proc.expect("Listening on" if program == "tcp-server" else "Receiving on")
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            proc.kill()
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for some reaper counts as exited)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


def proc_net_rows(proto: str = "tcp") -> list[list[str]]:
    with open(f"/proc/net/{proto}", encoding="ascii") as fh:
        return [line.split() for line in fh.read().splitlines()[1:]]


def hex_port(port: int) -> str:
    return f"{port:04X}"


def listen_row(port: int) -> list[str] | None:
    """The /proc/net/tcp row of the LISTEN socket on 127.0.0.1:``port``."""
    for row in proc_net_rows("tcp"):
        if row[1] == f"0100007F:{hex_port(port)}" and row[3] == "0A":
            return row
    return None


def run_lab(
    program: str, *args: str, timeout: float = 10, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a lab program to its end (for the error cases)."""
    return subprocess.run(
        lab_argv(program, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess[str], program: str) -> str:
    """Assert exit 1, nothing on stdout and exactly one line on stderr; return its words."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    prefix = f"{program}: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


def unused_low_port(candidates: Sequence[int] = tuple(range(1023, 899, -1))) -> int | None:
    """A port below 1024 that is free on 127.0.0.1 right now (needs root to test-bind)."""
    for port in candidates:
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    return None


def listening_line(
    port: int,
    bind: str = "127.0.0.1",
    mode: str = "iterative",
    backlog: int = 5,
    handler: str = "hold",
) -> str:
    """The tcp-server's first line."""
    where = f"[{bind}]" if ":" in bind else bind
    return f"Listening on {where}:{port} ({mode}, backlog {backlog}, handler {handler})"
