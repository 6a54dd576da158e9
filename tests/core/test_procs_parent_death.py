"""No child outlives the observatory: its parent is signalled, even with SIGKILL.

A separate Python process (the "parent") uses a ProcessManager to start a
server, a client and an arbitrary command (through the shim); the test then
signals the parent and checks, by pid, that every child is gone.
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
while not any("Sent" in line for line in m.output("client")):
    time.sleep(0.02)
print(json.dumps([server.pid, client.pid, sleeper.pid]), flush=True)
while True:
    time.sleep(1)
"""








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
        assert len(children) == 3 and all(alive(pid) for pid in children)
        for pid in children:  # really ours: started by the parent
            assert psutil.Process(pid).ppid() == parent.pid
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
