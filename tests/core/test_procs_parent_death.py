"""No child outlives the observatory: its parent is signalled, even with SIGKILL.

A separate Python process (the "parent") uses a ProcessManager to start a
server, a client, an arbitrary command and a command with a child in the
background (both under their supervisor, app.core.shim); the test then
signals the parent and checks, by pid, that every child and grandchild is gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import alive, free_port

ROOT = Path(__file__).resolve().parents[2]

PARENT = r"""
import json, sys, time
from app.core.procs import ProcessManager

port, handlers = sys.argv[1], sys.argv[2] == "handlers"
m = ProcessManager()
if handlers:
    m.install_signal_handlers()
server = m.launch_builtin("server", "tcp-server", [port])
while not any("Listening" in line for line in m.output("server")):
    time.sleep(0.02)
client = m.launch_builtin("client", "tcp-client", ["127.0.0.1", "hello", port])
sleeper = m.launch_command("sleeper", ["sleep", "1000"])
tree = m.launch_command("tree", ["sh", "-c", "sleep 1001 & echo started; sleep 1002"])
while not any("Sent" in line for line in m.output("client")) or not m.output("tree"):
    time.sleep(0.02)
print(json.dumps([server.pid, client.pid, sleeper.pid, tree.pid]), flush=True)
while True:
    time.sleep(1)
"""


def sleeps_below(pid: int) -> list[str]:
    """The N of every ``sleep N`` below ``pid``."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if cmdline[:1] == ["sleep"]:
            found += cmdline[1:]
    return found


@pytest.mark.parametrize(
    ("sig", "handlers", "exit_code"),
    [
        (signal.SIGTERM, True, 128 + signal.SIGTERM),
        (signal.SIGHUP, True, 128 + signal.SIGHUP),
        (signal.SIGINT, True, 128 + signal.SIGINT),
        (signal.SIGKILL, True, -signal.SIGKILL),  # cannot be caught: PDEATHSIG + lifeline
        (signal.SIGTERM, False, -signal.SIGTERM),  # no handlers: dies like SIGKILL
    ],
    ids=["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL", "SIGTERM-no-handlers"],
)
def test_no_child_is_left_when_the_parent_is_signalled(
    sig: signal.Signals, handlers: bool, exit_code: int
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(free_port()), "handlers" if handlers else "plain"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    children: list[int] = []
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        children = json.loads(line)
        assert len(children) == 4 and all(alive(pid) for pid in children)
        for pid in children:  # really ours: started by the parent (a command under its supervisor)
            assert parent.pid in {p.pid for p in psutil.Process(pid).parents()[:2]}
        # Everything below the parent: also the supervisors and the tree's two sleeps.
        deadline = time.monotonic() + 5
        while sorted(sleeps_below(parent.pid)) != ["1000", "1001", "1002"]:
            assert time.monotonic() < deadline, sleeps_below(parent.pid)
            time.sleep(0.02)
        below = psutil.Process(parent.pid).children(recursive=True)
        children += [p.pid for p in below if p.pid not in children]
        parent.send_signal(sig)
        assert parent.wait(10) == exit_code
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [pid for pid in children if alive(pid)]
        assert not left, f"children left after {sig.name}: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in children:
            if alive(pid):
                psutil.Process(pid).kill()
