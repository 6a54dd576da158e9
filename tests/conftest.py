"""Shared fixtures: real loopback sockets, and running code as another user."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import pytest

from tests.labs.procs import Labs

if TYPE_CHECKING:
    from tests.core.test_classroom import StandIn

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """A list the test appends its sockets to; all are closed afterwards."""
    held: list[socket.socket] = []
    yield held
    for s in held:
        with contextlib.suppress(OSError):
            s.close()


def listener(held: list[socket.socket], addr: str = "127.0.0.1", backlog: int = 5) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    held.append(s)
    s.bind((addr, 0))
    s.listen(backlog)
    return s


def connect(held: list[socket.socket], server: socket.socket) -> socket.socket:
    addr = server.getsockname()
    family = server.family
    c = socket.socket(family, socket.SOCK_STREAM)
    held.append(c)
    c.connect(addr[:2])
    return c


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM, addr: str = "127.0.0.1") -> int:
    """A port nothing uses right now on ``addr`` (the OS picks it: bind port 0)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


LISTENER_PROGRAM = (
    "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
    "print(s.getsockname()[1], flush=True); time.sleep(60)"
)


def listener_process(
    python: str = sys.executable, **popen: Any
) -> tuple[subprocess.Popen[str], int]:
    """Another process holding a loopback listener: (the process, its port). Kill it after."""
    proc = subprocess.Popen(
        [python, "-c", LISTENER_PROGRAM], stdout=subprocess.PIPE, text=True, **popen
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def observatory(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` as a user would run it; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, what: str = "", step: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what or predicate}")
        time.sleep(step)


async def until(
    pilot: Any, predicate: Callable[[], object], timeout: float = 30.0, what: str = ""
) -> None:
    """Let a Textual app under test run until ``predicate()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what or predicate}")
        await pilot.pause(0.05)


def _python_for_nobody() -> str | None:
    """An interpreter of this Python's version that user nobody may execute."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.realpath(sys.executable),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    for exe in candidates:
        if not os.path.exists(exe):
            continue
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                user="nobody",
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return exe
    return None


class AsNobody(Protocol):
    """What the ``as_nobody`` fixture gives: a runner as user nobody, and its interpreter."""

    python: str  # the interpreter nobody runs, for tests that start it themselves

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="session")
def as_nobody() -> Iterator[AsNobody]:
    """Run ``python -m app ...`` (or ``-c CODE``) as user nobody.

    The repository and the venv may live where nobody cannot read (under
    /root), so the package and psutil are copied into a world-readable
    folder first. Skips without root, or without an interpreter nobody may run.
    """
    # CI runs as root on a machine of ours: there these checks must run, not skip.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if os.geteuid() != 0:
        give_up("needs root to start a process as user nobody")
    exe = _python_for_nobody()
    if exe is None:
        give_up("no Python interpreter of this version that user nobody may execute")
    import psutil

    # pytest's own temporary folders are private to root: make a public one.
    base = Path(tempfile.mkdtemp(prefix="observatory-nobody-"))
    shutil.copytree(REPO / "app", base / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        Path(psutil.__file__).parent,
        base / "psutil",
        ignore=shutil.ignore_patterns("__pycache__", "tests"),
    )
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    parent = base
    while parent != parent.parent:  # every folder above must be searchable
        parent = parent.parent
        if parent.stat().st_mode & 0o001 == 0:
            give_up(f"{parent} is not searchable by other users")

    def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(base),
            "HOME": str(base),
        }
        argv = [exe, *args] if args[:1] == ("-c",) else [exe, "-m", "app", *args]
        return subprocess.run(
            argv,
            user="nobody",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=str(base),
        )

    nobody = cast(AsNobody, run)  # run, given the python attribute on the next line
    nobody.python = exe
    yield nobody
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Labs]:
    """Start lab programs with ``lab.start(...)``; every one is killed after the test."""
    labs = Labs()
    try:
        yield labs
    finally:
        labs.kill_all()


# A server like the lecture's tcp_server1: no SO_REUSEADDR, accepts one client, holds it.
KILLED_SERVER = (
    "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',0)); s.listen(5);"
    "print(s.getsockname()[1], flush=True); c,_=s.accept(); print('accepted', flush=True);"
    "time.sleep(60)"
)


@pytest.fixture
def killed_server() -> Iterator[tuple[int, socket.socket]]:
    """A server SIGKILLed (as K in the dashboard) while its client is connected: (its port,
    the client, still open). Its end lingers in FIN_WAIT2, held by the kernel."""
    from app.labs._common import port_holders

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SERVER], stdout=subprocess.PIPE, text=True
    )
    client: socket.socket | None = None
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port))
        assert proc.stdout.readline().strip() == "accepted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_for(
            lambda: any(h[0] == "FIN_WAIT2" for h in port_holders(port, "0.0.0.0")),
            what="the killed server's end in FIN_WAIT2",
        )
        yield port, client
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if client is not None:
            client.close()


# -- lab hosts (network namespaces): a blackhole for their range, and a check after ------------
LAB_RANGE = "10.0.2.0/24"


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _root_state() -> tuple[str, str, str]:
    """What a lab could leave in the machine's own namespace: links named as the lab's
    (o<PID>s<N>, o<PID>h<N>), and routes into the lab range, the blackhole left out.
    (Only those: another program on a shared machine may change the rest meanwhile.)"""
    links = "\n".join(
        line.split("link/")[0]
        for line in _ip("-o", "link").splitlines()
        if re.match(r"\d+: o\d+[sh]\d+", line)
    )
    routes = [_ip("route"), _ip("-6", "route")]
    kept = [
        "".join(r for r in t.splitlines(True) if "10.0.2." in r and "blackhole" not in r)
        for t in routes
    ]
    return links, kept[0], kept[1]


def _lab_namespaces() -> set[str]:
    return {ns for ns in _ip("netns", "list").split() if ns.startswith("obs")}


@pytest.fixture
def blackhole() -> Iterator[None]:
    """A blackhole route for the lab range in the machine's own namespace for the test's
    duration (a bug cannot send a packet anywhere); after it, the machine's links and
    routes are as before and no lab namespace is left that was not there before."""
    from app.core import netns

    mine = [a for a in _ip("-o", "addr").splitlines() if " 10.0.2." in a]
    if mine:  # a VirtualBox guest's own network is 10.0.2.0/24: a blackhole would cut it
        pytest.skip(f"this machine has an address of the lab range {LAB_RANGE}: {mine[0]}")
    before, namespaces = _root_state(), _lab_namespaces()
    added = subprocess.run(
        ["ip", "route", "add", "blackhole", LAB_RANGE], capture_output=True, text=True
    )
    if added.returncode != 0 and "blackhole" not in _ip("route", "show", LAB_RANGE):
        pytest.fail(f"could not add the blackhole route: {added.stderr.strip()}")
    try:
        yield
    finally:
        netns.destroy_all()
        netns.sweep_stale()  # a dashboard the test had to SIGKILL left its lab behind
        if added.returncode == 0:  # another test's blackhole is left to it
            subprocess.run(["ip", "route", "del", "blackhole", LAB_RANGE], check=False)
    assert _lab_namespaces() <= namespaces
    assert _root_state() == before


# -- the class view's tests (tests/core and tests/ui): a real snapshot, stand-in servers -----
@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[dict[str, Any], int]]:
    """A real /api/snapshot body (this machine's, with the test's listener) and its port."""
    from tests.core.test_classroom import real_snapshot

    held: list[socket.socket] = []
    try:
        yield real_snapshot(held)
    finally:
        for s in held:
            s.close()


@pytest.fixture
def servers() -> Iterator[list[StandIn]]:
    """The stand-in servers a test makes, closed after it."""
    made: list[StandIn] = []
    yield made
    for s in made:
        s.close()
