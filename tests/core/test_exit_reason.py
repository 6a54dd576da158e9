"""A failed launch says why in its exit event, and a reused name is said, not silent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.procs import ProcessEvent, ProcessExited, ProcessManager, ProcessStarted
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(60)

# The lecture's tcp_server1 in Python: bind() without SO_REUSEADDR; on failure
# perror("Error bind") and exit 1, as err_sys() does.
C_LIKE_SERVER = (
    "import os,socket,sys\n"
    "s=socket.socket()\n"
    "try:\n"
    "    s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(5)\n"
    "except OSError as e:\n"
    "    sys.stderr.write('Error bind: ' + os.strerror(e.errno) + '\\n'); sys.exit(1)\n"
    "import time; time.sleep(60)\n"
)
KILLED = (
    "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',0)); s.listen(5);"
    "print(s.getsockname()[1], flush=True); c,_=s.accept(); print('accepted', flush=True);"
    "time.sleep(60)"
)


class Events:
    def __init__(self, manager: ProcessManager) -> None:
        self.seen: list[ProcessEvent] = []
        self.lock = threading.Lock()
        manager.subscribe(self.add)

    def add(self, event: ProcessEvent) -> None:
        with self.lock:
            self.seen.append(event)

    def exit_of(self, name: str) -> ProcessExited:
        def find() -> ProcessExited | None:
            with self.lock:
                return next(
                    (e for e in self.seen if isinstance(e, ProcessExited) and e.name == name), None
                )

        found: ProcessExited = wait_for(find, what=f"{name}'s exit event")
        return found

    def starts(self, name: str) -> list[ProcessStarted]:
        with self.lock:
            return [e for e in self.seen if isinstance(e, ProcessStarted) and e.name == name]


@pytest.fixture
def manager() -> Iterator[ProcessManager]:
    with ProcessManager(register_atexit=False) as m:
        yield m


def test_a_lab_servers_error_line_is_in_its_exit_event(
    manager: ProcessManager, sockets: list[socket.socket]
) -> None:
    holder = socket.socket()
    sockets.append(holder)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    events = Events(manager)
    manager.launch_builtin("server2", "tcp-server", [str(port)])
    exited = events.exit_of("server2")
    assert exited.state == "exited 1"
    assert exited.reason == (
        f"tcp-server: port {port} is already in use on 127.0.0.1: a program is listening on "
        f"127.0.0.1:{port} (find it with `observatory snapshot --listen --port {port}`); "
        "stop it or pick another port"
    )
    assert exited.explanation is None  # the lab's line says it all
    assert exited.describe() == f"server2 (pid {exited.pid}) exited 1: {exited.reason}"


def test_address_already_in_use_of_any_command_names_the_holder(manager: ProcessManager) -> None:
    old = subprocess.Popen([sys.executable, "-c", KILLED], stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert old.stdout is not None
        port = int(old.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port))
        assert old.stdout.readline().strip() == "accepted"
        os.kill(old.pid, signal.SIGKILL)  # K: its end is left in FIN_WAIT2
        old.wait(5)
        events = Events(manager)
        manager.launch_command("cmd1", [sys.executable, "-c", C_LIKE_SERVER, str(port)])
        exited = events.exit_of("cmd1")
    finally:
        if old.poll() is None:
            os.kill(old.pid, signal.SIGKILL)
            old.wait(5)
        if client is not None:
            client.close()
    assert exited.state == "exited 1"
    assert exited.reason == "Error bind: Address already in use"
    assert exited.explanation is not None
    assert exited.explanation.startswith(f"bind() found port {port} taken: 127.0.0.1:{port} → ")
    assert "is in FIN_WAIT2, held by the kernel: no process" in exited.explanation
    assert "both programs set SO_REUSEADDR" in exited.explanation
    assert f"`observatory snapshot --all --port {port}`" in exited.explanation
    assert exited.describe().startswith(
        f"cmd1 (pid {exited.pid}) exited 1: Error bind: Address already in use (bind() found"
    )


def test_a_requested_stop_has_no_reason(manager: ProcessManager) -> None:
    events = Events(manager)
    manager.launch_command(
        "sleeper",
        [sys.executable, "-c", "import sys,time; sys.stderr.write('x\\n'); time.sleep(60)"],
    )
    wait_for(lambda: manager.output("sleeper"), what="its stderr line")
    manager.stop("sleeper")
    exited = events.exit_of("sleeper")
    assert exited.requested and exited.reason is None
    assert exited.describe() == f"sleeper (pid {exited.pid}) {exited.state}"


def test_the_name_of_an_ended_process_is_replaced_and_said(manager: ProcessManager) -> None:
    events = Events(manager)
    manager.launch_command("cmd1", [sys.executable, "-c", "print('first')"])
    events.exit_of("cmd1")
    wait_for(lambda: manager.get("cmd1").ended, what="cmd1 ended")
    assert manager.output("cmd1") == ["first"]
    manager.launch_command("cmd1", [sys.executable, "-c", "print('second')"])
    wait_for(lambda: manager.get("cmd1").ended, what="the new cmd1 ended")
    assert manager.output("cmd1") == ["second"]  # the dead cmd1's lines are gone
    first, second = events.starts("cmd1")
    assert first.replaced is None
    assert second.replaced == "exited 0"
    assert second.describe("python -c ...") == (
        f"cmd1 started, pid {second.pid}: python -c ... (the name of an ended process, "
        "exited 0: its output was dropped)"
    )
    assert [p.name for p in manager.processes()] == ["cmd1"]


def test_lab_up_prints_why_a_process_failed(tmp_path: Path, sockets: list[socket.socket]) -> None:
    holder = socket.socket()
    sockets.append(holder)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    path = tmp_path / "s.toml"
    path.write_text(
        f'[[process]]\nname = "server2"\nprogram = "tcp-server"\nargs = ["{port}"]\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "app", "lab", "up", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert (
        f"[server2] exited 1: tcp-server: port {port} is already in use on 127.0.0.1: a program "
        f"is listening on 127.0.0.1:{port}"
    ) in done.stdout
