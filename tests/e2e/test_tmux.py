"""End-to-end: the real dashboard in a real terminal (tmux), driven by keys like a user.

Every test starts ``observatory`` in a private tmux server, reads the screen
with ``capture-pane``, and proves afterwards that neither the dashboard nor any
process it started is left running.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, wait_for
from tests.e2e.tmuxutil import (
    ProcessTracker,
    Tmux,
    box_rows,
    observatory_argv,
    require_tmux,
    rows_with,
)

pytestmark = pytest.mark.timeout(90)

# The status line's first word (it was "Connection Observatory", now "Observatory").
STARTED = "Observatory"


def dashboard_up(pane: str) -> bool:
    """The status line is drawn and the LISTEN table is there."""
    lines = pane.splitlines()
    return bool(lines) and STARTED in lines[0] and "LISTEN" in pane


@dataclass
class Dashboard:
    """One running dashboard: its terminal, its process and everything it started."""

    term: Tmux
    proc: psutil.Process
    tracker: ProcessTracker

    def filter_rows(self, text: str) -> None:
        """Use the dashboard's own filter (``/``) so parallel noise cannot push our row away."""
        self.term.send_keys("/")
        # The filter box has a placeholder beginning "filter:"; the status line shows
        # "filter: TEXT" only once something is typed.
        self.term.wait_for(
            lambda pane: any(ln.strip(" ▊▎").startswith("filter") for ln in pane.splitlines()[1:]),
            what="the filter box",
        )
        self.term.type_text(text)
        self.term.wait_for(f"filter: {text}", what="the filter in the status line")
        self.term.send_keys("Enter")


@dataclass
class Launcher:
    """Starts dashboards for one test; the fixture cleans up all of them."""

    test_name: str
    made: list[Dashboard] = field(default_factory=list)
    terms: list[Tmux] = field(default_factory=list)

    def __call__(self, *args: str, width: int = 120, height: int = 40) -> Dashboard:
        argv, cwd = observatory_argv()
        term = Tmux(self.test_name)
        self.terms.append(term)
        term.start([*argv, *args], width=width, height=height, cwd=cwd)
        proc = term.find_child()
        tracker = ProcessTracker(proc).__enter__()
        dash = Dashboard(term, proc, tracker)
        self.made.append(dash)
        term.wait_for(dashboard_up, timeout=20, what="the dashboard's status line and tables")
        return dash

    def cleanup(self) -> None:
        for dash in self.made:
            dash.tracker.kill_leftovers()
        for term in self.terms:
            term.kill()


@pytest.fixture
def dashboard(request: pytest.FixtureRequest) -> Iterator[Launcher]:
    require_tmux()
    launcher = Launcher(re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40])
    try:
        yield launcher
    finally:
        launcher.cleanup()


def tracing_instance(pid: int) -> Path:
    """Where the dashboard's own tracefs instance is while it runs (as root)."""
    return Path("/sys/kernel/tracing/instances") / f"observatory-{pid}"


def tracefs_mounted() -> bool:
    with open("/proc/mounts", encoding="ascii", errors="replace") as mounts:
        return any(line.split()[1:3] == ["/sys/kernel/tracing", "tracefs"] for line in mounts)


def wait_for_instance(dash: Dashboard) -> Path | None:
    """As root, the dashboard watches every transition through an instance of its own."""
    if os.geteuid() != 0:
        return None
    path = tracing_instance(dash.proc.pid)
    wait_for(path.exists, timeout=10, what=f"{path}")
    return path


def listen_rows(pane: str, *needles: str) -> list[str]:
    return rows_with(pane, "LISTEN", *needles)


# -- a. the test: a socket appears and goes; q quits; nothing is left ------------
def test_listen_row_appears_and_goes_then_q_quits_cleanly(dashboard: Launcher) -> None:
    dash = dashboard("--interval", "0.5")
    term = dash.term
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        dash.filter_rows(f"127.0.0.1:{port}")
        server.listen(5)
        me = f"{os.getpid()}/"
        term.wait_for(
            lambda pane: listen_rows(pane, f"127.0.0.1:{port}", me),
            timeout=10,
            what=f"a LISTEN row 127.0.0.1:{port} owned by {me}",
        )
    # Closed: the row is marked GONE for a moment, then leaves the table.
    term.wait_for(
        lambda pane: (
            not listen_rows(pane, f"127.0.0.1:{port}")
            or listen_rows(pane, f"127.0.0.1:{port}", "GONE")
        ),
        timeout=10,
        what=f"127.0.0.1:{port} gone or marked GONE",
    )
    term.wait_for(
        lambda pane: box_shown(pane) and not listen_rows(pane, f"127.0.0.1:{port}"),
        timeout=15,
        what=f"the row of 127.0.0.1:{port} removed",
    )
    term.send_keys("q")
    assert term.wait_exit() == 0
    dash.tracker.assert_all_gone(timeout=5)


def box_shown(pane: str) -> bool:
    """The LISTEN box is on screen (so "no row" means no row, not no table)."""
    return box_rows(pane, "LISTEN") is not None


# -- b. launch a server through the dialog, quit with q, y -------------------------------
def test_launch_dialog_starts_server_and_quit_stops_it(dashboard: Launcher) -> None:
    dash = dashboard("--interval", "0.5")
    term = dash.term
    port = free_port()
    dash.filter_rows(f"127.0.0.1:{port}")
    term.send_keys("l")
    term.wait_for("Launch a lab process", what="the launch dialog")
    term.wait_for("Will run: tcp-server 6000", what="the default port 6000 in the preview")
    term.send_keys("Tab", "Tab")  # program -> name -> port (client fields are hidden)
    term.send_keys(*["BSpace"] * 6)
    term.wait_for(
        lambda pane: "Will run: tcp-server 6000" not in pane, what="the port field emptied"
    )
    term.type_text(str(port))
    term.wait_for(f"Will run: tcp-server {port} ", what=f"port {port} in the preview")
    term.send_keys("Enter")
    term.wait_for(
        lambda pane: listen_rows(pane, f"127.0.0.1:{port}", "/tcp-server"),
        timeout=15,
        what=f"LISTEN 127.0.0.1:{port} of a tcp-server",
    )
    servers = dash.tracker.wait_named("tcp-server")
    pane = term.capture()
    [row] = listen_rows(pane, f"127.0.0.1:{port}")
    assert f"{servers[0].pid}/tcp-server" in row, pane

    term.send_keys("q")
    term.wait_for("Quit the observatory?", what="the quit question")
    term.wait_for("Stop them and quit", what="the button that stops the lab processes")
    term.send_keys("y")
    assert term.wait_exit() == 0
    dash.tracker.assert_all_gone(timeout=5)


# -- c. signals: the dashboard and everything it started go away --------------------------
def scenario_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "one-server.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [[process]]
        name = "s1"
        program = "tcp-server"
        args = ["{port}"]
        """)
    )
    return path


def start_with_server(dashboard: Launcher, tmp_path: Path) -> tuple[Dashboard, int]:
    port = free_port()
    dash = dashboard("--interval", "0.5", "--scenario", str(scenario_file(tmp_path, port)))
    dash.term.wait_for(
        re.compile(r"s1\s+\d+\s+(\d+%\s+)?running"),
        timeout=15,
        what="lab process s1 running in the Lab table",
    )
    [server] = dash.tracker.wait_named("tcp-server")
    listening = psutil.Process(server.pid).net_connections("tcp")
    assert any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in listening)
    return dash, port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_stops_dashboard_and_its_lab_processes(
    dashboard: Launcher, tmp_path: Path, sig: signal.Signals
) -> None:
    dash, _ = start_with_server(dashboard, tmp_path)
    instance = wait_for_instance(dash)
    dash.proc.send_signal(sig)
    status = dash.term.wait_exit()
    dash.tracker.assert_all_gone(timeout=5)
    assert status == 128 + sig, f"exit status {status} after {sig.name}"
    assert instance is None or not instance.exists(), "the tracefs instance was left"
    # The terminal was given back: the alternate screen is gone with the dashboard.
    assert not dashboard_up(dash.term.capture()), dash.term.last_capture


def test_sigkill_of_dashboard_still_ends_its_children(dashboard: Launcher, tmp_path: Path) -> None:
    was_mounted = tracefs_mounted()
    dash, _ = start_with_server(dashboard, tmp_path)
    instance = wait_for_instance(dash)
    dash.proc.send_signal(signal.SIGKILL)
    assert dash.term.wait_exit() == 128 + signal.SIGKILL
    # Nobody could clean up: the children must notice their parent's death themselves.
    dash.tracker.assert_all_gone(timeout=3)
    if instance is not None:
        # The tracefs instance cannot go with a SIGKILL: the next start removes it, and says so.
        assert instance.exists()
        again = dashboard()
        wait_for(lambda: not instance.exists(), timeout=10, what=f"{instance} removed")
        again.term.wait_for("Cleaned up", timeout=10, what="the note that it was removed")
        again.term.send_keys("q")
        again.term.wait_exit()
        # The killed dashboard mounted tracefs and could not unmount it: the test does.
        if not was_mounted and tracefs_mounted() and not any(instance.parent.iterdir()):
            subprocess.run(["umount", "/sys/kernel/tracing"], check=False)


def test_closing_the_terminal_ends_everything(dashboard: Launcher, tmp_path: Path) -> None:
    """Killing the tmux session is a user closing the window: SIGHUP from the tty."""
    dash, _ = start_with_server(dashboard, tmp_path)
    dash.term.kill()
    dash.tracker.assert_all_gone(timeout=5)


# -- d. a small terminal: both tables on the first screen, the footer readable ------------
@pytest.mark.parametrize("theme", [None, "projector"])
def test_80x24_shows_both_tables_and_the_footer(dashboard: Launcher, theme: str | None) -> None:
    args = ["--interval", "0.5"] + (["--theme", theme] if theme else [])
    dash = dashboard(*args, width=80, height=24)
    term = dash.term
    pane = term.wait_for(
        lambda p: "LISTEN" in p and "ESTABLISHED" in p and p,
        what="LISTEN and ESTABLISHED on the first screen",
    )
    assert isinstance(pane, str)
    lines = pane.splitlines()
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines), pane
    footer = term.wait_for(
        lambda p: [ln for ln in p.splitlines() if ln.strip()][-1:], what="a last line"
    )
    assert isinstance(footer, list)
    assert re.search(r"\bq\s+Quit\b", footer[0]), pane
    # The table titles sit above the side column, not pushed off the screen.
    titles = [i for i, ln in enumerate(lines) if "LISTEN" in ln or "ESTABLISHED" in ln]
    assert titles and max(titles) < 20, pane
    term.send_keys("q")
    assert term.wait_exit() == 0
    dash.tracker.assert_all_gone(timeout=5)


# -- e. refusals before any screen: one line, exit 2 -----------------------------------
def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv, need_cwd = observatory_argv()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TEXTUAL") and k != "OBSERVATORY_SERVED"
    }
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=need_cwd or cwd,
    )


def assert_one_line_refusal(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], done.stderr


def test_unknown_theme_is_refused_in_one_line() -> None:
    # stdout is a pipe here: the theme must still be named, not "needs a terminal".
    assert_one_line_refusal(run_cli("--theme", "nosuch"), "nosuch", "projector")


def test_interval_zero_is_refused_in_one_line() -> None:
    assert_one_line_refusal(run_cli("--interval", "0"), "--interval")


def test_missing_scenario_is_refused_before_the_screen(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.toml"
    done = run_cli("--scenario", str(missing))
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert "nosuch.toml" in done.stderr, done.stderr


def test_dashboard_without_terminal_says_so() -> None:
    assert_one_line_refusal(run_cli("--interval", "0.5"), "terminal")


def test_refusal_in_tmux_leaves_no_screen(dashboard: Launcher) -> None:
    """In a real terminal too, a bad theme is one line and status 2, not a broken screen."""
    argv, cwd = observatory_argv()
    term = Tmux("bad-theme")
    dashboard.terms.append(term)
    term.start([*argv, "--theme", "nosuch"], width=100, height=20, cwd=cwd)
    assert term.wait_exit() == 2
    pane = term.capture(history=True)
    text = [
        ln for ln in pane.splitlines() if ln.strip() and not ln.startswith("Pane is dead")
    ]  # tmux's own note
    assert text[-1] == "EXITED 2", pane
    # One message (wrapped by the terminal at 100 columns), naming the theme.
    message = "".join(text[:-1])
    assert message.startswith("observatory") and "'nosuch'" in message, pane
    assert message.count("observatory:") == 1, pane
    assert "Traceback" not in pane
    assert not dashboard_up(pane), pane
