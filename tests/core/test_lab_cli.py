"""``observatory lab run|up|check`` as a student types them: real processes, real sockets."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from app.core.sockets import ProcNetSource
from tests.conftest import alive, free_port

ROOT = Path(__file__).resolve().parents[2]
OBSERVATORY = [sys.executable, "-m", "app"]


class Running:
    """``observatory lab up`` in the background, its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*OBSERVATORY, "lab", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)
        for seen in self.lines:
            if found := regex.search(seen):
                return found
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if found := regex.search(line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; got: {self.lines}")

    def finish(self, timeout: float = 15.0) -> tuple[int, list[str], str]:
        code = self.proc.wait(timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        assert self.proc.stderr is not None
        return code, self.lines, self.proc.stderr.read()

    def pids(self) -> dict[str, int]:
        found = {}
        for line in self.lines:
            if m := re.match(r"\[(\S+)\]\s+started \(pid (\d+)\)", line):
                found[m.group(1)] = int(m.group(2))
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.pids().values():
            if alive(pid):
                psutil.Process(pid).kill()


def scenario(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(
        f"""
[[process]]
name = "srv"
program = "tcp-server"
args = ["{port}"]

[[process]]
name = "client1"
program = "tcp-client"
args = ["127.0.0.1", "hello", "{port}"]
delay = 0.3

[[process]]
name = "sleeper"
command = ["sleep", "1000"]
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_up_streams_prefixed_output_and_stops_everything_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    up = Running("up", str(scenario(tmp_path, port)))
    try:
        # Names padded to one width: "[srv]" as wide as "[sleeper]".
        client_port = up.wait_for(r"^\[srv\]     Client: 127\.0\.0\.1:(\d+)$").group(1)
        up.wait_for(rf"^\[client1\] Connected 127\.0\.0\.1:{client_port} -> 127\.0\.0\.1:{port}$")
        up.wait_for(r"^\[client1\] Sent: hello$")
        up.wait_for(r"^\[sleeper\] started \(pid \d+\): sleep 1000$")
        pids = up.pids()
        assert set(pids) == {"srv", "client1", "sleeper"}
        listening = [s.pid for s in ProcNetSource().poll().listening() if s.local_port == port]
        assert listening == [pids["srv"]]
        up.proc.send_signal(sig)
        code, lines, err = up.finish()
        assert code == 0, (lines, err)
        assert f"observatory lab up: got {sig.name}: stopping every process (SIGTERM)" in err
        assert "[srv]     stopped by SIGTERM (exit 143)" in lines
        assert "[sleeper] killed by SIGTERM" in lines
        assert not [name for name, pid in pids.items() if alive(pid)]
    finally:
        up.kill()


def test_up_exits_when_everything_ended_with_nonzero_if_one_failed(tmp_path: Path) -> None:
    path = tmp_path / "ends.toml"
    path.write_text(
        f"""
[[process]]
name = "ok"
command = ["true"]

[[process]]
name = "fails"
command = ["{sys.executable}", "-c", "import sys; print('bye'); sys.exit(3)"]
""",
        encoding="utf-8",
    )
    up = Running("up", str(path))
    try:
        code, lines, err = up.finish()
    finally:
        up.kill()
    assert code == 1
    assert "[ok]    exited 0" in lines and "[fails] bye" in lines and "[fails] exited 3" in lines
    assert "observatory lab up: did not end well: fails (exited 3)" in err

    path.write_text('[[process]]\nname = "ok"\ncommand = ["true"]\n', encoding="utf-8")
    done = subprocess.run(
        [*OBSERVATORY, "lab", "up", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=20
    )
    assert done.returncode == 0 and "[ok] exited 0" in done.stdout.splitlines()


def test_up_refuses_a_bad_file_and_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    path = tmp_path / "bad.toml"
    path.write_text(
        f"""
[[process]]
name = "touch"
command = ["touch", "{marker}"]

[[process]]
name = "client1"
program = "tcp-client"
args = ["127.0.0.1", "hello"]

[[process]]
name = "touch"
command = ["nonexistent-program-xyz"]
""",
        encoding="utf-8",
    )
    done = subprocess.run(
        [*OBSERVATORY, "lab", "up", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=20
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f'{path}: process #2 "client1": key "args": ')
    assert (
        lines[1]
        == f'{path}: process #3 "touch": key "name": "touch" is already the name of process #1'
    )
    assert lines[2] == (
        f'{path}: process #3 "touch": key "command": command not found: nonexistent-program-xyz'
    )
    assert lines[3] == f"observatory lab: {path}: 3 mistakes, nothing was started"
    assert len(lines) == 4
    time.sleep(0.2)
    assert not marker.exists()


def test_check_lists_a_good_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [*OBSERVATORY, "lab", "check", "scenarios/session4.toml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "scenarios/session4.toml: 5 processes, ready to start"
    assert "  client2: tcp-client 127.0.0.1 hello 6000  (after 1 s)" in done.stdout
    done = subprocess.run(
        [*OBSERVATORY, "lab", "check", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
    )
    assert (
        done.returncode == 2
        and done.stderr.splitlines()[0] == f"{tmp_path / 'none.toml'}: no such file"
    )


def test_run_refusals_are_one_line_exit_2() -> None:
    cases = {
        (
            "lab",
            "run",
            "ftp-server",
            "21",
        ): "observatory lab: there is no built-in program 'ftp-server'",
        (
            "lab",
            "run",
            "tcp-client",
            "127.0.0.1",
        ): "observatory lab: the following arguments are required",
        ("lab", "run", "tcp-server", "0"): "observatory lab: port must be a number from 1 to 65535",
        ("lab",): "observatory lab: choose what to do",
    }
    for argv, start in cases.items():
        done = subprocess.run(
            [*OBSERVATORY, *argv], capture_output=True, text=True, cwd=ROOT, timeout=20
        )
        assert done.returncode == 2, argv
        assert done.stderr.startswith(start) and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_run_a_server_in_the_foreground_then_stop_it() -> None:
    port = free_port()
    run = Running("run", "tcp-server", str(port), "--bind", "127.0.0.1")
    try:
        run.wait_for(rf"^Listening on 127\.0\.0\.1:{port} ")
        listening = [s.pid for s in ProcNetSource().poll().listening() if s.local_port == port]
        assert listening == [run.proc.pid]  # same process: ps shows what you started
        run.proc.send_signal(signal.SIGINT)
        code, lines, _err = run.finish()
        assert code == 128 + signal.SIGINT and lines[-1] == "Stopped by SIGINT"
    finally:
        run.kill()


def _lecture_ports_free() -> str | None:
    for port in (6000, 16000, 45321):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return f"port {port} is in use on this machine"
    return None


def test_up_session4_reproduces_the_lecture() -> None:
    busy = _lecture_ports_free()
    if busy:
        # In CI the machine is ours: a busy lecture port is a failure, not a reason to skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"the lecture's ports must be free: {busy}"
        )
    up = Running("up", "scenarios/session4.toml")
    try:
        # Match our clients by their ephemeral ports: another program (a scan
        # in a parallel test, say) may touch port 6000 too.
        port1 = up.wait_for(r"^\[client1\] Connected 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:6000$")[1]
        up.wait_for(rf"^\[server1\] Client: 127\.0\.0\.1:{port1}$")
        port2 = up.wait_for(r"^\[client2\] Connected 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:6000$")[1]
        up.wait_for(r"^\[client2\] Sent: hello$")
        pids = up.pids()
        assert set(pids) == {"server1", "server2", "server3", "client1", "client2"}
        deadline = time.monotonic() + 5
        while True:  # client2's connection reaches the backlog a moment after "Sent"
            snap = ProcNetSource().poll()
            listen = {
                s.local_port: s for s in snap.listening() if s.local_port in (6000, 16000, 45321)
            }
            backlog = [
                s
                for s in snap.sockets
                if s.local_port == 6000 and s.remote_port == int(port2) and s.waiting_in_backlog
            ]
            if backlog or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {p: (s.local_addr, s.pid) for p, s in listen.items()} == {
            6000: ("0.0.0.0", pids["server1"]),
            16000: ("0.0.0.0", pids["server2"]),
            45321: ("0.0.0.0", pids["server3"]),
        }
        # Iterative server busy with client1: client2 waits in the backlog, never accepted.
        assert len(backlog) == 1 and listen[6000].recv_q >= 1
        assert f"[server1] Client: 127.0.0.1:{port2}" not in up.lines
        up.proc.send_signal(signal.SIGINT)
        code, lines, err = up.finish()
        assert code == 0, (lines, err)
        assert not [name for name, pid in pids.items() if alive(pid)]
    finally:
        up.kill()
