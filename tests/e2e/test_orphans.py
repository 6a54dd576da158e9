"""No orphans (issue 16, point 4): the dashboard, `lab up` and `lesson run`, each ended by
q (Ctrl-C for the two commands), SIGTERM, SIGHUP (the terminal closed) and SIGKILL, in a
real terminal (tmux). After each: no process it started, no tracefs instance, no lab
namespace and no mount of its own. After SIGKILL what is left (namespaces; the tracefs
instance) is removed by the next start of the same program, which says so.

As root with lab hosts (a blackhole route holds the lab range); as another user the same
without hosts."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.test_tmux import dashboard_up
from tests.e2e.tmuxutil import ProcessTracker, Tmux, observatory_argv, require_tmux

pytestmark = pytest.mark.timeout(90)
ROOT = os.geteuid() == 0
INSTANCES = Path("/sys/kernel/tracing/instances")

HOSTS = """
[[host]]
name = "srv"
address = "10.0.2.15/24"
"""
ON_HOST = 'host = "srv"\n' if ROOT else ""
PROCESSES = f"""
name = "inner"
{ON_HOST}program = "tcp-server"
args = ["7301"]
"""
SLEEPER = """
name = "sleeper"
command = ["sh", "-c", "sleep 777 & sleep 778"]
"""


def scenario(folder: Path) -> Path:
    path = folder / "orphans.toml"
    text = (HOSTS if ROOT else "") + f"[[process]]{PROCESSES}\n[[process]]{SLEEPER}"
    path.write_text(text, encoding="utf-8")
    return path


def lesson(folder: Path) -> Path:
    path = folder / "orphans-lesson.toml"
    at = " at srv" if ROOT else ""
    text = (HOSTS if ROOT else "") + (
        f'[[step]]\ntitle = "Up"\nexpect = ["listen 7301{at}"]\n'
        f"[[step.process]]{PROCESSES}\n[[step.process]]{SLEEPER}\n"
        '[[step]]\ntitle = "Never reached"\nexpect = ["no listen 7301"]\n'
    )
    path.write_text(text, encoding="utf-8")
    return path


def leftovers(pid: int) -> list[str]:
    """What of run ``pid`` is left: its lab namespaces, their mounts, its tracefs instance."""
    left = (
        [f"namespace {ns}" for ns in os.listdir("/run/netns")]
        if os.path.isdir("/run/netns")
        else []
    )
    left = [item for item in left if re.fullmatch(rf"namespace obs{pid}-[a-z0-9-]+", item)]
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
        left += [f"mount {line.split()[4]}" for line in mounts if f"/obs{pid}-" in line.split()[4]]
    instance = INSTANCES / f"observatory-{pid}"
    if instance.exists():
        left.append(f"tracefs instance {instance}")
    return left


class Run:
    """One program of the observatory in its own tmux terminal."""

    def __init__(self, kind: str, folder: Path, name: str) -> None:
        argv, cwd = observatory_argv()
        args = {
            "dashboard": ["--scenario", str(scenario(folder)), "--interval", "0.5"],
            "lab-up": ["lab", "up", str(scenario(folder))],
            "lesson-run": ["lesson", "run", str(lesson(folder))],
        }[kind]
        self.kind = kind
        self.term = Tmux(name)
        self.term.start([*argv, *args], cwd=cwd)
        self.proc = self.term.find_child()
        self.tracker = ProcessTracker(self.proc).__enter__()

    def wait_ready(self) -> None:
        if self.kind == "dashboard":
            self.term.wait_for(dashboard_up, timeout=20, what="the dashboard")
        elif self.kind == "lesson-run":
            self.term.wait_for("Press Enter", timeout=30, what="the lesson's first step")
        self.tracker.wait_named("tcp-server", timeout=20)
        self.tracker.wait_named("sleep", timeout=20)
        if self.kind == "dashboard" and ROOT:
            wait_for((INSTANCES / f"observatory-{self.proc.pid}").exists, timeout=10)

    def end(self, how: str) -> None:
        if how == "q":
            if self.kind == "dashboard":
                self.term.send_keys("q")
                self.term.wait_for("Quit the observatory?", what="the quit dialog")
                self.term.send_keys("y")
            else:
                self.term.send_keys("C-c")
        elif how == "SIGHUP":
            self.term.kill()  # the terminal closed: SIGHUP from the tty
        else:
            self.proc.send_signal(signal.Signals[how])

    def close(self) -> None:
        self.tracker.kill_leftovers()
        self.term.kill()


@pytest.fixture
def runs(request: pytest.FixtureRequest) -> Iterator[list[Run]]:
    require_tmux()
    if ROOT:
        request.getfixturevalue("blackhole")
    made: list[Run] = []
    yield made
    for run in made:
        run.close()


@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGHUP", "SIGKILL"])
@pytest.mark.parametrize("kind", ["dashboard", "lab-up", "lesson-run"])
def test_nothing_is_left(runs: list[Run], tmp_path: Path, kind: str, how: str) -> None:
    name = f"orphans-{kind}-{how}"
    run = Run(kind, tmp_path, name)
    runs.append(run)
    run.wait_ready()
    pid = run.proc.pid
    run.end(how)
    run.tracker.assert_all_gone(timeout=5)
    left = leftovers(pid)
    if how != "SIGKILL":
        assert left == [], f"{kind} after {how} left {left}"
        return
    if ROOT:  # SIGKILL: no handler ran, so the namespaces (and the instance) are still there
        assert any(item.startswith("namespace") for item in left), left
    if kind == "dashboard" and ROOT:
        assert f"tracefs instance {INSTANCES}/observatory-{pid}" in left, left
    # The next start of the same program removes what is left, and says so.
    again = Run(kind, tmp_path, f"{name}-again")
    runs.append(again)
    again.wait_ready()
    if left:
        said = "Removed" if kind != "dashboard" or ROOT else "Cleaned up"
        again.term.wait_for(said, timeout=15, what="the note of what was removed", history=True)
    assert leftovers(pid) == [], leftovers(pid)
    again.end("SIGTERM")
    again.tracker.assert_all_gone(timeout=5)
    assert leftovers(again.proc.pid) == []
    print(f"{kind} SIGKILL: left {left}, removed by the next start")


@pytest.mark.skipif(not ROOT, reason="lab hosts need root")
def test_any_dashboard_start_removes_what_a_killed_lab_left(
    runs: list[Run], tmp_path: Path
) -> None:
    """The namespaces of a `lab up` killed with SIGKILL are removed by the next dashboard,
    even one started without lab hosts of its own, and it says so."""
    run = Run("lab-up", tmp_path, "orphans-any-dashboard")
    runs.append(run)
    run.wait_ready()
    pid = run.proc.pid
    run.end("SIGKILL")
    run.tracker.assert_all_gone(timeout=5)
    assert any(item.startswith("namespace") for item in leftovers(pid))
    argv, cwd = observatory_argv()
    term = Tmux("orphans-plain-dashboard")
    term.start([*argv, "--interval", "0.5"], cwd=cwd)
    try:
        term.wait_for(dashboard_up, timeout=20, what="the dashboard")
        term.wait_for("Removed", timeout=15, what="the note of what was removed", history=True)
        assert leftovers(pid) == [], leftovers(pid)
    finally:
        term.send_keys("q")
        term.kill()
