"""Judging a lesson's sentences against real sockets and real lab processes: each holds
when the kernel shows it, and when it does not the verdict says what is there instead."""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from app.core.lesson import parse_lesson
from app.core.lesson_check import Verdict, World, judge
from app.core.lesson_sentence import Expectation
from app.core.model import Snapshot
from app.core.procs import ProcessManager
from app.core.sockets import default_source
from tests.conftest import connect, free_port, listener, wait_for


@pytest.fixture
def manager() -> Iterator[ProcessManager]:
    with ProcessManager() as m:
        yield m


def sentence(text: str, names: tuple[str, ...] = ("s1", "burn"), scan: str = "") -> Expectation:
    """``text`` parsed as a lesson's one sentence (processes ``names`` started before)."""
    steps = "".join(
        f'[[step]]\ntitle = "start {n}"\n[[step.process]]\nname = "{n}"\ncommand = ["true"]\n'
        for n in names
    )
    scan_line = f'scan = "{scan}"\n' if scan else ""
    hosts = '[[host]]\nname = "server"\naddress = "10.0.2.15/24"\n'
    text_toml = f'{hosts}{steps}[[step]]\ntitle = "look"\n{scan_line}expect = [{text!r}]\n'
    lesson = parse_lesson(text_toml, "t.toml")
    return lesson.steps[-1].expect[0]


def world(manager: ProcessManager | None = None, scan: dict[int, str] | None = None) -> World:
    processes = manager.processes() if manager is not None else []
    return World(default_source().poll(), processes, scan)


def verdict(text: str, w: World, **kw: str) -> Verdict:
    return judge(sentence(text, **kw), w)  # type: ignore[arg-type]


def until_held(text: str, manager: ProcessManager | None = None, timeout: float = 5.0) -> None:
    exp = sentence(text)
    wait_for(lambda: judge(exp, world(manager)).held, timeout, f"{text} to hold")


def test_listen(manager: ProcessManager) -> None:
    port = free_port()
    info = manager.launch_builtin("s1", "tcp-server", [str(port)])
    until_held(f"listen {port}", manager)
    w = world(manager)
    for held in (
        f"listen {port}",
        f"listen {port} on 127.0.0.1",
        f"listen {port} by s1",  # the lab name
        f"listen {port} by tcp-server",  # the built-in, as ps shows it
        f"no listen {free_port()}",
    ):
        assert verdict(held, w) == Verdict(True), held
    assert verdict(f"listen {port} on 0.0.0.0", w).why == (
        f"{port} is listened on by s1 on 127.0.0.1, not 0.0.0.0"
    )
    assert verdict(f"listen {port} by server9", w).why == (
        f"{port} is listened on by s1 on 127.0.0.1, not by server9"
    )
    assert verdict(f"no listen {port}", w).why == f"{port} is still listened on by s1 on 127.0.0.1"
    other = free_port()
    assert verdict(f"listen {other}", w).why == f"nothing listens on {other}"
    # On a lab host: this machine's listener is not the host's.
    assert verdict(f"listen {port} at server", w).why == (
        f"nothing listens on {port} on lab host server"
    )
    moved = Snapshot(
        w.snapshot.taken_at,
        tuple(dataclasses.replace(s, host="server") for s in w.snapshot.sockets),
    )
    on_host = World(moved, w.processes)
    assert verdict(f"listen {port} at server", on_host).held
    assert verdict(f"listen {port}", on_host).why == f"nothing listens on {port}"
    assert info.pid is not None


def test_established_and_backlog(sockets: list[socket.socket]) -> None:
    server = listener(sockets, backlog=5)
    port = server.getsockname()[1]
    connect(sockets, server)
    connect(sockets, server)  # never accepted: both wait in the backlog
    until_held(f"backlog {port} 2")
    w = world()
    assert verdict(f"established {port}", w).held
    assert verdict(f"established {port} count 2", w).held  # two connections, four rows
    assert verdict(f"established {port} on 127.0.0.1 from 127.0.0.1", w).held
    assert verdict(f"established {port} count 1", w).why == f"2 connections on {port}, not 1"
    assert verdict(f"backlog {port} 1", w).why == (
        f"2 connections wait in the backlog of {port}, not 1"
    )
    assert verdict(f"established {port} on 10.0.2.15", w).why.startswith(
        f"no connection on {port} with 10.0.2.15 at that end; there are: 127.0.0.1:"
    )
    assert verdict(f"no established {port}", w).why.startswith(f"2 connections on {port}: ")
    idle = free_port()
    assert verdict(f"established {idle}", w).why == f"no connection on {idle}"
    assert verdict(f"backlog {idle} 0", w).why == f"nothing listens on {idle}"
    assert verdict(f"established {idle} count 0", w).held


def test_established_by_names_the_holder(
    manager: ProcessManager, sockets: list[socket.socket]
) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    manager.launch_builtin("s1", "tcp-client", ["127.0.0.1", "hello", str(port)])
    until_held(f"established {port} by s1", manager)
    w = world(manager)
    assert verdict(f"established {port} by tcp-client", w).held
    assert verdict(f"established {port} by burn", w).why.startswith(
        f"no connection on {port} held by burn; there are: 127.0.0.1:"
    )


def test_time_wait_is_the_active_closers(sockets: list[socket.socket]) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    client = connect(sockets, server)
    accepted, _ = server.accept()
    sockets.append(accepted)
    until_held(f"no state TIME_WAIT port {port}")
    accepted.close()  # the server's end closes first: it is the one left in TIME_WAIT
    assert client.recv(10) == b""
    client.close()
    until_held(f"state TIME_WAIT port {port}")
    w = world()
    assert verdict(f"state time_wait port {port}", w).held
    assert verdict(f"state CLOSE_WAIT port {port}", w).why.startswith(
        f"no socket on port {port} is in CLOSE_WAIT; there are: "
    )
    assert "TIME_WAIT" in verdict(f"state CLOSE_WAIT port {port}", w).why
    assert verdict(f"no state TIME_WAIT port {port}", w).why.endswith("in TIME_WAIT")
    idle = free_port()
    assert verdict(f"state LISTEN port {idle}", w).why == f"no TCP socket on port {idle}"


def test_udp_has_no_listen(sockets: list[socket.socket]) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(udp)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    until_held(f"udp {port}")
    w = world()
    assert verdict(f"udp {port} on 127.0.0.1", w).held
    assert verdict(f"no listen {port}", w).held
    assert verdict(f"no established {port}", w).held
    assert verdict(f"no udp {port}", w).why.startswith(f"{port} is still bound (UDP) by ")
    assert verdict(f"udp {port} on 0.0.0.0", w).why.endswith(", not 0.0.0.0")
    idle = free_port(socket.SOCK_DGRAM)
    assert verdict(f"udp {idle}", w).why == f"no UDP socket is bound to {idle}"


def test_cpu_and_output(manager: ProcessManager) -> None:
    manager.launch_command(
        "burn", [sys.executable, "-u", "-c", "print('warm\\x1b[2J up'); exec('while 1: pass')"]
    )
    manager.launch_command("s1", [sys.executable, "-c", "import time; time.sleep(30)"])
    until_held("output burn contains warm", manager)
    until_held("cpu burn above 50", manager)  # two looks 0.25 s apart measure it
    until_held("cpu s1 below 20", manager)  # (its first look includes Python's start-up)
    w = world(manager)
    why = verdict("cpu burn below 20", w).why
    assert why.startswith("burn uses ") and why.endswith("% CPU, not below 20%"), why
    assert verdict("output burn contains up", w).held
    assert verdict("output burn contains nothing like it", w).why == (
        "burn has not printed it; its last line: warm\x1b[2J up"
    )
    assert verdict("output s1 contains x", w).why == "s1 has printed nothing"
    manager.stop("burn")
    ended = world(manager)
    assert verdict("cpu burn above 1", ended).why.startswith("burn is not running (")
    assert verdict("cpu s1 above 1", World(ended.snapshot, [])).why == "no process named s1 runs"


def test_scan_and_service() -> None:
    w = world(scan={6000: "open", 6001: "closed"})
    assert verdict("scan 6000 open", w, scan="6000-6002").held
    assert (
        verdict("scan 6001 open", w, scan="6000-6002").why == "nmap says 6001 is closed, not open"
    )
    assert verdict("scan 6002 open", w, scan="6000-6002").why == "nmap said nothing of 6002"
    assert verdict("scan 6000 open", world(), scan="6000").why == "not scanned yet"
    # As ss and the dashboard name ports: /etc/services, then nmap's list.
    assert verdict("service 22 SSH", w).held
    assert verdict("service 22 http", w).why == "22 is named ssh, not http"
    unnamed = 45321
    assert verdict(f"service {unnamed} unknown", w).held
    assert verdict(f"service {unnamed} x11", w).why == (
        f"no service name is known for {unnamed} (unknown)"
    )


def test_judging_is_quick(sockets: list[socket.socket]) -> None:
    """The dashboard judges every sentence at every poll, on its UI loop."""
    server = listener(sockets)
    port = server.getsockname()[1]
    w = world()
    many = Snapshot(
        w.snapshot.taken_at, w.snapshot.sockets * (10_000 // max(1, len(w.snapshot.sockets)) + 1)
    )
    texts = [f"listen {port}", f"established {port} count 1", f"state TIME_WAIT port {port}"]
    big = World(many, [])
    start = time.perf_counter()
    for text in texts:
        judge(sentence(text), big)
    assert time.perf_counter() - start < 0.5, "three sentences over 10,000 sockets"
