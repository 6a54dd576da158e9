"""Issue 16, point 5: every flow as an unprivileged user (CI runs as root: these drop to nobody).

Each test runs the real ``observatory`` as user nobody (uid, gid and no supplementary
groups of nobody's), from a copy of the app and its dependencies that nobody may read
but not write, with HOME and the XDG folders in a private folder of nobody's. Root's
own sockets are made by the test itself, on loopback: nobody sees them as hidden, may
not kill their owner or close them, and is told so in words; the SYN and UDP scans and
the tracepoint are out of reach, each with its reason; the rest works.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from app.core.agent_client import AgentClient, FetchError, Target
from tests.conftest import (
    LISTENER_PROGRAM,
    REPO,
    AsNobody,
    connect,
    free_port,
    listener,
    observatory,
    wait_for,
)
from tests.e2e.tmuxutil import ProcessTracker, Tmux, require_tmux, rows_with
from tests.nmaputil import require_nmap

pytestmark = pytest.mark.timeout(90)

HIDDEN_HELP = "a process of another user holds it; you may not see which (run as root to see)"
WATCH_SEES = (
    "observatory watch: sampled once a second, and every close — "
    "run as root to see every transition"
)
TOKEN = "unprivileged-agent-token-5c1d"


# -- running as nobody --------------------------------------------------------------------
def _distributions() -> list[importlib.metadata.Distribution]:
    """The project's runtime dependencies, and theirs (what ``pip install`` would bring)."""
    seen: set[str] = set()
    found: list[importlib.metadata.Distribution] = []
    todo = ["connection-observatory"]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement of another Python only (tomli on 3.10)
        found.append(dist)
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            if "extra" not in marker:
                todo.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return [d for d in found if d.metadata["Name"] != "connection-observatory"]


def _copy_for_nobody(lib: Path) -> None:
    """The app and its dependencies' files into ``lib``: nobody may read, not write."""
    shutil.copytree(REPO / "app", lib / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for shipped in ("styles", "lessons"):  # where the wheel puts them (pyproject.toml)
        shutil.copytree(REPO / shipped, lib / "app" / shipped)
    for dist in _distributions():
        for name in dist.files or []:
            text = str(name)
            if text.startswith("..") or "__pycache__" in text or ".dist-info" in text:
                continue
            source = Path(str(dist.locate_file(name)))
            if source.is_file():
                (lib / text).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, lib / text)
    for path in [lib, *lib.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@dataclass
class Nobody:
    """Runs ``python -m app ...`` as user nobody; every process it starts is ended after."""

    python: str
    lib: Path  # the app and its dependencies (root's, read-only for nobody)
    files: Path  # lesson and scenario files the tests write (root's, readable)
    home: Path  # nobody's own, mode 0700: HOME and the XDG folders
    uid: int
    gid: int
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        home = str(self.home)
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(self.lib),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            "HOME": home,
            "XDG_DATA_HOME": f"{home}/.local/share",
            "XDG_CACHE_HOME": f"{home}/.cache",
            "XDG_CONFIG_HOME": f"{home}/.config",
            "XDG_STATE_HOME": f"{home}/.local/state",
        }

    def argv(self, *args: str) -> list[str]:
        return [self.python, "-m", "app", *args]

    def _as_nobody(self) -> dict[str, Any]:
        return {
            "user": self.uid,
            "group": self.gid,
            "extra_groups": [],
            "env": self.env,
            "cwd": str(self.home),
            "stdin": subprocess.DEVNULL,
            "text": True,
        }

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, timeout=timeout, **self._as_nobody()
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **self._as_nobody(),
        )
        self.started.append(proc)
        return proc

    def popen_code(self, code: str) -> subprocess.Popen[str]:
        """``python -c CODE`` as nobody (not the observatory: another program of nobody's)."""
        proc = subprocess.Popen(
            [self.python, "-c", code], stdout=subprocess.PIPE, **self._as_nobody()
        )
        self.started.append(proc)
        return proc

    def give(self, path: Path, mode: int = 0o600) -> Path:
        """Make ``path`` nobody's own file."""
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def stop_all(self) -> None:
        """SIGTERM what is still running (and what it started), then SIGKILL, by pid."""
        procs: list[psutil.Process] = []
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    parent = psutil.Process(proc.pid)
                    procs += [parent, *parent.children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
        self.started.clear()


@pytest.fixture(scope="module")
def nobody_base(as_nobody: AsNobody) -> Iterator[Path]:
    """One copy of the app and its dependencies for the module (a quarter of a second)."""
    base = Path(tempfile.mkdtemp(prefix="observatory-unprivileged-"))
    base.chmod(0o755)
    try:
        _copy_for_nobody(base / "lib")
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nobody(as_nobody: AsNobody, nobody_base: Path) -> Iterator[Nobody]:
    """(as_nobody skips without root, and fails so in CI; its interpreter is used here.)"""
    entry = pwd.getpwnam("nobody")
    files = Path(tempfile.mkdtemp(prefix="files-", dir=nobody_base))
    files.chmod(0o755)
    home = files / "home"
    home.mkdir(mode=0o700)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    runner = Nobody(as_nobody.python, nobody_base / "lib", files, home, entry.pw_uid, entry.pw_gid)
    try:
        yield runner
    finally:
        runner.stop_all()
        shutil.rmtree(files, ignore_errors=True)


class Lines:
    """A pipe's lines, read on a thread as they come (so a test can wait for one)."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait(self, *needles: str, timeout: float = 15) -> str:
        """The first line holding every one of ``needles``; fails the test after ``timeout``."""

        def found() -> str | None:
            return next((ln for ln in list(self.lines) if all(n in ln for n in needles)), None)

        line: str = wait_for(found, timeout, what=f"a line with {needles} in:\n{self.text}")
        return line

    def rest(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return self.text


def end(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout)


def gone(pids: list[int], timeout: float = 5) -> None:
    def none_left() -> bool:
        return not any(psutil.pid_exists(pid) and _running(pid) for pid in pids)

    wait_for(none_left, timeout, what=f"pids {pids} to end")


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# -- the command line ---------------------------------------------------------------------
def test_snapshot_shows_roots_listener_with_its_owner_hidden(
    nobody: Nobody, sockets: list[socket.socket]
) -> None:
    port = listener(sockets).getsockname()[1]
    done = nobody.run("snapshot", "--listen", "--port", str(port))
    assert done.returncode == 0, done.stderr
    [row] = [ln for ln in done.stdout.splitlines() if f"127.0.0.1:{port} " in ln]
    assert "LISTEN" in row and "hidden (user root)" in row, done.stdout
    assert f"{os.getpid()}/" not in row
    assert f"  hidden: {HIDDEN_HELP}" in done.stdout.splitlines()
    as_json = nobody.run("snapshot", "--json", "--listen", "--port", str(port))
    [sock] = json.loads(as_json.stdout)
    assert (sock["owner"], sock["user"], sock["pid"], sock["process"]) == (
        "hidden",
        "root",
        None,
        None,
    )
    # Root, the same command, sees whose it is: what nobody was not shown is there.
    [mine] = json.loads(observatory("snapshot", "--json", "--listen", "--port", str(port)).stdout)
    assert (mine["owner"], mine["pid"]) == ("process", os.getpid())


def test_watch_says_the_tracepoint_needs_root_and_falls_back(
    nobody: Nobody, sockets: list[socket.socket]
) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    watch = nobody.popen("watch", "--port", str(port), "--duration", "30")
    err, out = Lines(watch.stderr), Lines(watch.stdout)
    assert err.wait("observatory watch:") == WATCH_SEES
    client = connect(sockets, server)
    conn, _ = server.accept()
    cport = client.getsockname()[1]
    # A sample sees the connection; its close comes from the kernel's destroy group.
    out.wait(f"127.0.0.1:{cport}", "-> ESTABLISHED", "poll")
    client.close()
    conn.close()
    line = out.wait(f"127.0.0.1:{cport}", "-> CLOSE", "destroy")
    assert line.split()[-2:] == ["-", "destroy"], line  # root's: no pid for nobody
    assert end(watch) == 0
    assert "tracepoint" not in out.rest()
    assert err.rest() == WATCH_SEES


def test_lab_up_and_lab_run_start_a_server_and_a_client(nobody: Nobody) -> None:
    port = free_port()
    scenario = nobody.files / "lab.toml"
    scenario.write_text(
        f"""
[[process]]
name = "server"
program = "tcp-server"
args = ["{port}"]

[[process]]
name = "client"
program = "tcp-client"
args = ["127.0.0.1", "hola", "{port}"]
delay = 0.5
""",
        encoding="utf-8",
    )
    scenario.chmod(0o644)
    up = nobody.popen("lab", "up", str(scenario))
    out = Lines(up.stdout)
    out.wait("[server] Client: 127.0.0.1:")
    out.wait("[client] Sent: hola")
    [sock] = json.loads(observatory("snapshot", "--json", "--listen", "--port", str(port)).stdout)
    assert (sock["process"], sock["user"]) == ("tcp-server", "nobody")
    pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", out.text)]
    assert len(pids) == 2
    assert end(up) == 0
    assert "[server] stopped by SIGTERM" in out.rest()
    gone(pids)

    # The same two programs, one `lab run` each.
    port = free_port()
    server = nobody.popen("lab", "run", "tcp-server", str(port))
    said = Lines(server.stdout)
    said.wait(f"Listening on 127.0.0.1:{port}")
    client = nobody.run("lab", "run", "tcp-client", "127.0.0.1", "hola", str(port), "--hold", "0.2")
    assert client.returncode == 0, client.stderr
    assert "Sent: hola" in client.stdout
    said.wait("Client: 127.0.0.1:")
    assert end(server, signal.SIGINT) == 128 + signal.SIGINT  # Ctrl-C, as a shell says it
    assert "Stopped by SIGINT" in said.rest()


def test_lesson_run_of_a_small_lesson(nobody: Nobody, sockets: list[socket.socket]) -> None:
    require_nmap()
    port, roots = free_port(), listener(sockets).getsockname()[1]
    lesson = nobody.files / "small.toml"
    lesson.write_text(
        f"""
title = "Unprivileged"

[[step]]
title = "A server, a client, and root's listener"
scan = "{port}"
expect = [
    "listen {port} on 127.0.0.1 by s1",
    "established {port} from 127.0.0.1 by c1 count 1",
    "scan {port} open",
    "listen {roots}",
]

[[step.process]]
name = "s1"
program = "tcp-server"
args = ["{port}"]

[[step.process]]
name = "c1"
program = "tcp-client"
args = ["127.0.0.1", "hola", "{port}"]
delay = 0.3
""",
        encoding="utf-8",
    )
    lesson.chmod(0o644)
    done = nobody.run("lesson", "run", str(lesson), "--auto", "--timeout", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    held = [line[2:] for line in done.stdout.splitlines() if line.startswith("✓ ")]
    assert held == [
        f"listen {port} on 127.0.0.1 by s1",
        f"established {port} from 127.0.0.1 by c1 count 1",
        f"scan {port} open",
        f"listen {roots}",
    ], done.stdout
    assert "all 4 expectations held" in done.stdout
    pids = [int(p) for p in re.findall(r"started \S+ \(pid (\d+)\)", done.stdout)]
    assert len(pids) == 2, done.stdout
    gone(pids)


def test_agent_serves_a_snapshot_to_a_client_with_the_token(
    nobody: Nobody, sockets: list[socket.socket]
) -> None:
    roots = listener(sockets).getsockname()[1]
    token = nobody.home / "token"
    token.write_text(TOKEN + "\n", encoding="ascii")
    nobody.give(token)
    port = free_port()
    agent = nobody.popen("agent", "--port", str(port), "--token-file", str(token))
    said = Lines(agent.stdout)
    line = said.wait("observatory agent: listening on")
    assert line.startswith(f"observatory agent: listening on http://127.0.0.1:{port}/")
    assert "every request needs Authorization: Bearer TOKEN" in line
    target = Target("127.0.0.1", port)
    client = AgentClient(target, TOKEN, timeout=10)
    try:
        snap = client.snapshot()
    finally:
        client.close()
    [sock] = [s for s in snap.sockets if s.local_port == roots and s.state == "LISTEN"]
    assert (sock.owner, sock.user, sock.pid) == ("hidden", "root", None)
    stranger = AgentClient(target, None, timeout=10)
    with pytest.raises(FetchError) as refused:
        stranger.snapshot()
    stranger.close()
    assert "token" in str(refused.value), refused.value
    assert end(agent) == 0


@pytest.mark.parametrize(
    ("scan_type", "reason"),
    [
        ("syn", "SYN scans need root: nmap sends raw packets"),
        ("udp", "UDP scans need root: nmap sends raw packets and reads the ICMP replies"),
    ],
)
def test_privileged_scans_are_refused_with_the_reason(
    nobody: Nobody, scan_type: str, reason: str
) -> None:
    require_nmap()
    done = nobody.run("scan", "127.0.0.1", "-p", str(free_port()), "--type", scan_type)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == f"observatory scan: {reason}; run as root, or use --type connect\n"


def test_a_connect_scan_works_and_names_roots_listener_hidden(
    nobody: Nobody, sockets: list[socket.socket]
) -> None:
    require_nmap()
    port = listener(sockets).getsockname()[1]
    done = nobody.run("scan", "127.0.0.1", "-p", str(port))
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = [ln for ln in done.stdout.splitlines() if ln.startswith(f"{port}/tcp ")]
    assert row.split()[1] == "open"
    assert "hidden (user root) on 127.0.0.1" in row
    assert "-sT" in done.stdout.splitlines()[0]


def test_close_is_refused_in_words_and_the_connection_lives(
    nobody: Nobody, sockets: list[socket.socket]
) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    client = connect(sockets, server)
    conn, _ = server.accept()
    sockets.append(conn)
    done = nobody.run("close", f"127.0.0.1:{port}", f"127.0.0.1:{client.getsockname()[1]}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        "observatory close: closing a connection needs root (the kernel's SOCK_DESTROY,"
        " as ss -K); nothing was touched\n"
    )
    client.sendall(b"hola")
    conn.settimeout(5)
    assert conn.recv(4) == b"hola"


# -- the dashboard, in a real terminal ----------------------------------------------------
_EDGES = "▎▊▌▁▔│╮╯╭╰─ "


def toasts(pane: str) -> str:
    """The notifications' text (right of their ``▌`` edge), lines joined, spaces collapsed."""
    parts = [line.rsplit("▌", 1)[1].strip(_EDGES) for line in pane.splitlines() if "▌" in line]
    return " ".join(" ".join(parts).split())


def flat(pane: str) -> str:
    return " ".join(pane.split())


def side(pane: str) -> str:
    """The side column's text (right of the LISTEN table's border), spaces collapsed."""
    lines = pane.splitlines()
    edge = lines[1].find("╮")
    return flat("\n".join(line[edge + 1 :] for line in lines[1:]))


@dataclass
class Terminal:
    term: Tmux
    tracker: ProcessTracker

    def wait(self, test: Any, what: str, timeout: float = 15) -> Any:
        return self.term.wait_for(test, timeout=timeout, what=what)

    def filter_rows(self, text: str) -> None:
        self.term.send_keys("/")
        # The box has the focus when the footer shows only the keys an Input leaves.
        self.wait(lambda pane: pane.splitlines()[-1].startswith("/ Filter"), "the filter box")
        self.term.send_keys("C-u")  # what an earlier filter left
        self.term.type_text(text)
        self.wait(f"filter: {text} ", "the filter in the status line")
        self.term.send_keys("Enter")


@pytest.fixture
def dashboard_as_nobody(nobody: Nobody) -> Iterator[Terminal]:
    require_tmux()
    term = Tmux("unpriv")
    env = [f"{k}={v}" for k, v in nobody.env.items()]
    drop = ["setpriv", f"--reuid={nobody.uid}", f"--regid={nobody.gid}", "--clear-groups", "--"]
    tracker: ProcessTracker | None = None
    try:
        term.start(
            ["env", "-i", "TERM=xterm-256color", "COLORTERM=truecolor", *env, *drop]
            + nobody.argv("--interval", "0.5"),
            cwd=nobody.home,
        )
        proc = term.find_child()
        tracker = ProcessTracker(proc).__enter__()
        screen = Terminal(term, tracker)
        screen.wait(
            lambda pane: "Observatory" in pane.splitlines()[0] and "LISTEN" in pane,
            "the dashboard's status line and tables",
            timeout=30,
        )
        assert proc.uids().real == nobody.uid and proc.gids().real == nobody.gid
        yield screen
    finally:
        if tracker is not None:
            tracker.kill_leftovers()
        term.kill()


def test_dashboard_as_nobody_refuses_in_words(
    nobody: Nobody, sockets: list[socket.socket], dashboard_as_nobody: Terminal
) -> None:
    screen, term = dashboard_as_nobody, dashboard_as_nobody.term
    # Only the terminal's user reaches the dashboard: it listens on no port.
    dashboard = psutil.Process(screen.tracker.root.pid)
    assert [c for c in dashboard.net_connections("inet") if c.status == "LISTEN"] == []
    assert dashboard.net_connections("udp") == []

    # Another program of nobody's, not started by the dashboard: k asks first, naming it.
    other = nobody.popen_code(LISTENER_PROGRAM)
    assert other.stdout is not None
    other_port = int(other.stdout.readline())
    screen.filter_rows(f"127.0.0.1:{other_port}")
    screen.wait(
        lambda pane: rows_with(pane, "LISTEN", f"127.0.0.1:{other_port}", f"{other.pid}/"),
        f"nobody's own listener with its pid {other.pid}",
    )
    term.send_keys("k")
    dialog = screen.wait(
        lambda pane: f"Kill pid {other.pid}?" in pane and "user:    nobody" in pane,
        "the confirmation naming the pid and the user",
    )
    assert dialog
    assert "was not started by the observatory" in flat(term.last_capture)
    assert "command: " in term.last_capture and "import socket" in term.last_capture
    term.send_keys("n")
    screen.wait(lambda pane: f"Kill pid {other.pid}?" not in pane, "the dialog closed")
    time.sleep(0.5)
    assert other.poll() is None, "a No sent the signal anyway"
    term.send_keys("k")
    screen.wait(f"Kill pid {other.pid}?", "the confirmation, again")
    term.send_keys("y")
    assert other.wait(10) == -signal.SIGTERM
    screen.wait(lambda pane: f"Signal sent to pid {other.pid}." in toasts(pane), "said so")

    # Root's listener and connection: their owner is hidden; k and c are refused in words.
    server = listener(sockets)
    port = server.getsockname()[1]
    client = connect(sockets, server)
    conn, _ = server.accept()
    sockets.append(conn)
    screen.filter_rows(f"127.0.0.1:{port}")
    screen.wait(
        lambda pane: (
            rows_with(pane, "LISTEN", f"127.0.0.1:{port}", "hidden: root")
            and rows_with(pane, "ESTABLISHED", f"127.0.0.1:{port}", "hidden: root")
        ),
        "root's listener and connection, hidden",
    )
    term.send_keys("k")
    screen.wait(
        lambda pane: f"Cannot kill the owner of 127.0.0.1:{port}: {HIDDEN_HELP}." in toasts(pane),
        "k refused in words",
    )
    term.send_keys("Tab")  # the ESTABLISHED table
    term.send_keys("c")
    screen.wait(
        lambda pane: (
            "Closing a connection needs root (the kernel's SOCK_DESTROY, as ss -K);"
            " nothing was touched." in toasts(pane)
        ),
        "c refused in words",
    )
    client.sendall(b"hola")
    conn.settimeout(5)
    assert conn.recv(4) == b"hola"  # the connection lives

    # The TCP states tab says what the event stream sees: samples and closes, not every
    # transition (the tracepoint needs root).
    term.send_keys("m", "z")
    screen.wait(
        lambda pane: (
            "(sampled every 0.5 s, and every close — run as root to see every "
            "transition)" in flat(pane)
        ),
        "the event stream's words in the TCP states tab",
    )
    term.send_keys("z")

    # The Scan tab: SYN and UDP are listed as needing root, and say why when chosen.
    term.send_keys("/")  # then Escape: no filter box in the way of Tab
    time.sleep(0.5)  # (the box takes the focus after the key)
    term.send_keys("Escape")
    screen.wait(lambda pane: "filter: " not in pane.splitlines()[0], "the filter gone")
    term.send_keys("s")
    screen.wait("Type   TCP connect (-sT)", "the Scan tab")
    for _ in range(20):  # Tab through the fields until a 7 typed lands in Ports
        term.send_keys("Tab")
        term.type_text("7")
        deadline, landed = time.monotonic() + 1.0, None
        while landed is None and time.monotonic() < deadline:
            landed = re.search(r"(Ports| or) +(7+)(?= |$)", term.capture(), re.MULTILINE)
        if landed is not None:
            term.send_keys(*["BSpace"] * len(landed.group(2)))  # the field as it was
            if landed.group(1) == "Ports":
                break
    else:
        pytest.fail(f"Tab never reached the Ports field\n{term.last_capture}")
    term.send_keys("Tab", "Enter")  # the Type field: open its list
    listed = screen.wait(
        lambda pane: "TCP SYN (-sS) — needs root" in pane and "UDP (-sU) — needs root" in pane,
        "the privileged types marked in the list",
    )
    assert listed and "TCP connect (-sT) — needs root" not in term.last_capture
    term.send_keys("Down", "Enter")
    screen.wait(
        lambda pane: (
            "SYN scans need root: nmap sends raw packets; run the dashboard as root,"
            " or choose TCP connect." in side(pane)
        ),
        "the reason, when SYN is chosen",
    )
    term.send_keys("Escape")
    time.sleep(0.5)  # ESC and q close together are alt+q to a terminal
    term.send_keys("q")
    assert term.wait_exit() == 0
    screen.tracker.assert_all_gone()
    records = list((nobody.home / ".local/share/connection-observatory/sessions").glob("*.jsonl"))
    assert records and all(r.stat().st_uid == nobody.uid for r in records)
