"""The lab programs as processes: their names, their CPU, and dying with their parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tests.conftest import free_port
from tests.labs.procs import (
    REPO,
    Labs,
    gone,
    lab_argv,
    wait_gone,
)

pytestmark = pytest.mark.timeout(30)


def test_each_program_names_its_process(lab: Labs) -> None:
    tcp_port, udp_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
    procs = {
        "tcp-server": lab.server("tcp-server", str(tcp_port)),
        "udp-server": lab.server("udp-server", str(udp_port)),
        "tcp-client": lab.start("tcp-client", "127.0.0.1", "hi", str(tcp_port)),
        "udp-client": lab.start("udp-client", "127.0.0.1", "hi", str(udp_port), "--hold", "5"),
    }
    procs["tcp-client"].expect("Holding")
    procs["udp-client"].expect("Holding")
    for name, proc in procs.items():
        assert psutil.Process(proc.pid).name() == name
        with open(f"/proc/{proc.pid}/comm", encoding="ascii") as fh:  # what ps and ss show
            assert fh.read().strip() == name


def test_busy_handler_uses_cpu_and_hold_does_not(lab: Labs) -> None:
    busy_port, hold_port = free_port(), free_port()
    busy = lab.server("tcp-server", str(busy_port), "--handler", "busy")
    hold = lab.server("tcp-server", str(hold_port))
    for port in (busy_port, hold_port):
        lab.start("tcp-client", "127.0.0.1", "hi", str(port)).expect("Holding")
    busy.expect("Client:")
    hold.expect("Client:")
    busy_ps, hold_ps = psutil.Process(busy.pid), psutil.Process(hold.pid)
    busy_ps.cpu_percent(None)
    hold_ps.cpu_percent(None)
    time.sleep(0.5)
    assert busy_ps.cpu_percent(None) > 20
    assert hold_ps.cpu_percent(None) < 20


def test_busy_handler_still_notices_the_client_leaving(lab: Labs) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port), "--handler", "busy")
    client = lab.start("tcp-client", "127.0.0.1", "hi", str(port), "--hold", "0.3", "--busy")
    server.expect("Client:")
    assert client.expect("Closed") == "Closed the connection"
    server.expect("Client gone:", timeout=3)


def test_busy_client_uses_cpu(lab: Labs) -> None:
    port = free_port()
    lab.server("tcp-server", str(port))
    client = lab.start("tcp-client", "127.0.0.1", "hi", str(port), "--busy")
    client.expect("Holding")
    ps = psutil.Process(client.pid)
    ps.cpu_percent(None)
    time.sleep(0.5)
    assert ps.cpu_percent(None) > 20


# -- dying with the parent -------------------------------------------------------------

INTERMEDIATE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    argv, lifeline = sys.argv[1:], os.environ.get("USE_LIFELINE") == "1"
    env = dict(os.environ)
    env.pop("OBSERVATORY_PARENT_PID", None)
    fds = ()
    if lifeline:
        r, w = os.pipe()  # this parent keeps w; the child watches r
        env["OBSERVATORY_LIFELINE_FD"] = str(r)
        fds = (r,)
    child = subprocess.Popen(argv, env=env, pass_fds=fds, stdin=subprocess.DEVNULL)
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def _start_through_parent(
    lab: Labs, *argv: str, lifeline: bool
) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, USE_LIFELINE="1" if lifeline else "0")
    parent = subprocess.Popen(
        [sys.executable, "-c", INTERMEDIATE, *argv],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    lab.pids.extend([parent.pid, child_pid])
    return parent, child_pid


def _wait_listening(pid: int, port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if any(c.laddr.port == port for c in psutil.Process(pid).net_connections("tcp")):
                return
        except psutil.NoSuchProcess:
            pytest.fail("the lab program ended before listening")
        time.sleep(0.02)
    pytest.fail("the lab program did not start listening")


def test_pdeathsig_stops_the_program_when_its_parent_is_killed(lab: Labs) -> None:
    port = free_port()
    parent, child = _start_through_parent(lab, *lab_argv("tcp-server", str(port)), lifeline=False)
    _wait_listening(child, port)
    assert psutil.Process(child).ppid() == parent.pid
    parent.kill()
    parent.wait()
    assert wait_gone(child, 2.0), "the lab program outlived its parent"


def test_lifeline_pipe_alone_stops_the_program(lab: Labs) -> None:
    """The parent (this test) stays alive, so no PDEATHSIG: only the pipe's EOF acts."""
    port = free_port()
    read_end, write_end = os.pipe()
    try:
        server = lab.start(
            "tcp-server",
            str(port),
            env={"OBSERVATORY_LIFELINE_FD": str(read_end)},
            pass_fds=(read_end,),
        )
        os.close(read_end)
        read_end = -1
        server.expect("Listening")
        time.sleep(0.3)
        assert server.proc.poll() is None, "exited while the lifeline was still open"
        os.close(write_end)
        write_end = -1
        assert server.wait(timeout=2) == 128 + signal.SIGTERM
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


def test_lifeline_path_through_a_killed_parent(lab: Labs) -> None:
    port = free_port()
    parent, child = _start_through_parent(lab, *lab_argv("tcp-server", str(port)), lifeline=True)
    _wait_listening(child, port)
    parent.kill()
    parent.wait()
    assert wait_gone(child, 2.0)


def test_parent_already_gone_at_start_exits_at_once(lab: Labs) -> None:
    """The race fix: the recorded parent died before PDEATHSIG was set."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert gone(dead.pid)
    server = lab.start(
        "tcp-server", str(free_port()), env={"OBSERVATORY_PARENT_PID": str(dead.pid)}
    )
    assert server.wait(timeout=5) == 128 + signal.SIGTERM
    assert server.next_line() is None  # never got to listen


@pytest.mark.parametrize(
    ("options", "sig"),
    [
        ((), signal.SIGTERM),
        (("--concurrent",), signal.SIGTERM),
        (("--concurrent", "--handler", "busy"), signal.SIGINT),
        (("--handler", "busy"), signal.SIGHUP),
    ],
)
def test_a_stop_signal_ends_a_serving_server_quietly(
    lab: Labs, options: tuple[str, ...], sig: signal.Signals
) -> None:
    """Also while a client is being served, in the main thread or in another one."""
    port = free_port()
    server = lab.server("tcp-server", str(port), *options)
    client = lab.start("tcp-client", "127.0.0.1", "hi", str(port))
    client.expect("Holding")
    server.expect("Client:")
    server.signal(sig)
    assert server.wait(timeout=1) == 128 + sig  # promptly, even with a busy thread
    assert server.expect("Stopped by") == f"Stopped by {sig.name}"
    assert server.stderr_text() == ""
    # "(reset)" when the server exits with the client's bytes unread (busy reads late).
    assert client.expect("Server closed") in (
        "Server closed the connection",
        "Server closed the connection (reset)",
    )
    assert client.wait() == 0
