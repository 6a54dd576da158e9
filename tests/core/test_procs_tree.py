"""A launched command's whole tree ends with it, and with the observatory, even SIGKILLed.

The kernel clears ``PR_SET_PDEATHSIG`` in forked children: a command's own
children never had it, and lived on after a ``kill -9`` of the dashboard or
of ``lab up``. Every command now runs under a supervisor (``app.core.shim``),
a child subreaper that takes the tree down. Real processes throughout; every
process is found, and checked, by pid (with its start time, as psutil does).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from app.core.procs import ProcessManager
from app.core.sockets import ProcNetSource
from tests.conftest import alive, free_port

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "app" / "core" / "shim.py"

# setsid(), then fork again: the daemon's recipe. The grandchild is in a
# session of its own and, once its parent exits, an orphan.
DAEMON = (
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.execvp('sleep', ['sleep', '783'])\n"
    "    os._exit(0)\n"
    "os.execvp('sleep', ['sleep', '784'])\n"
)

# name -> (command, the sleeps that must run before the parent is killed)
TREES: dict[str, tuple[list[str], set[str]]] = {
    "background": (["sh", "-c", "sleep 777 & sleep 778"], {"777", "778"}),
    "subshell": (["sh", "-c", "(sleep 779 &) ; sleep 780"], {"779", "780"}),
    "daemon": ([sys.executable, "-c", DAEMON], {"783", "784"}),
    # Ignores SIGTERM, and so does its child: needs the SIGKILL after the grace time.
    "stubborn": (["sh", "-c", "trap '' TERM; sleep 781 & sleep 782"], {"781", "782"}),
}
ALL_SLEEPS = set().union(*(marks for _, marks in TREES.values()))

PARENT = r"""
import json, sys, time
from app.core.procs import ProcessManager

m = ProcessManager()
trees = json.loads(sys.argv[1])
pids = [m.launch_command(name, argv).pid for name, argv in trees.items()]
print(json.dumps(pids), flush=True)
time.sleep(1000)
"""


def sleeps_below(pid: int) -> dict[str, psutil.Process]:
    """The ``sleep N`` processes below ``pid``, by N."""
    found = {}
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if len(cmdline) == 2 and cmdline[0] == "sleep":
            found[cmdline[1]] = proc
    return found


def wait_for_tree(
    top: int, marks: set[str], procs: list[psutil.Process], timeout: float = 10.0
) -> None:
    """Wait until every ``sleep N`` of ``marks`` runs below ``top``; all below it go in ``procs``.

    ``procs`` is filled even when this fails, so that the test can stop them.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = {p.pid for p in procs}
        procs += [p for p in psutil.Process(top).children(recursive=True) if p.pid not in seen]
        if marks <= set(sleeps_below(top)):
            return
        assert time.monotonic() < deadline, f"only {sorted(sleeps_below(top))} of {sorted(marks)}"
        time.sleep(0.02)


def running(proc: psutil.Process) -> bool:
    """Still that process (pid and start time), and not a zombie."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def seconds_until_gone(procs: list[psutil.Process], timeout: float) -> float:
    started = time.monotonic()
    while any(running(p) for p in procs) and time.monotonic() - started < timeout:
        time.sleep(0.02)
    left = [f"{p.pid} {' '.join(p.cmdline())}" for p in procs if running(p)]
    assert not left, f"still running after {timeout} s: {left}"
    return time.monotonic() - started


def kill_leftovers(procs: list[psutil.Process]) -> None:
    for proc in procs:  # only what this test started, by pid and start time
        if running(proc):
            proc.kill()


@pytest.fixture
def manager() -> Iterator[ProcessManager]:
    with ProcessManager(register_atexit=False) as m:
        yield m


# ------------------------------------------------------------ parent SIGKILLed


def test_sigkill_of_the_parent_leaves_nothing_of_any_tree() -> None:
    trees = {name: argv for name, (argv, _) in TREES.items()}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(trees)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    procs: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        wait_for_tree(parent.pid, ALL_SLEEPS, procs)
        commands = [psutil.Process(pid) for pid in pids]
        # The pid the manager gave is the command's own: what ps shows.
        assert [" ".join(p.cmdline()[:2]) for p in commands] == [
            "sh -c",
            "sh -c",
            "sleep 784",
            "sh -c",
        ]
        # The orphans (sleep 779, and the daemon's sleep 783 in its own
        # session) are kept by the supervisor, not handed to init.
        sleeps = sleeps_below(parent.pid)
        assert sleeps["783"].ppid() == sleeps["784"].ppid() != 1
        assert os.getsid(sleeps["783"].pid) != pids[2]
        # Each supervisor with all below it; the stubborn tree needs the SIGKILL.
        stubborn_supervisor = commands[3].parent()
        assert stubborn_supervisor is not None
        stubborn = {stubborn_supervisor, *stubborn_supervisor.children(recursive=True)}
        parent.kill()
        assert parent.wait(5) == -signal.SIGKILL
        took = seconds_until_gone([p for p in procs if p not in stubborn], 2.0)
        took_all = seconds_until_gone(procs, 3.0)  # after the 1 s grace time
        print(f"after SIGKILL of the parent: gone in {took:.2f} s, all in {took_all:.2f} s")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        kill_leftovers(procs)


def test_sigkill_of_lab_up_leaves_nothing(tmp_path: Path) -> None:
    scenario = tmp_path / "trees.toml"
    scenario.write_text(
        "".join(
            f"[[process]]\nname = {json.dumps(name)}\ncommand = {json.dumps(TREES[name][0])}\n"
            for name in ("background", "subshell", "daemon")
        ),
        encoding="utf-8",
    )
    lab = subprocess.Popen(
        [sys.executable, "-m", "app", "lab", "up", str(scenario)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,
    )
    procs: list[psutil.Process] = []
    try:
        marks = TREES["background"][1] | TREES["subshell"][1] | TREES["daemon"][1]
        wait_for_tree(lab.pid, marks, procs, timeout=15)
        lab.kill()
        assert lab.wait(5) == -signal.SIGKILL
        took = seconds_until_gone(procs, 2.0)
        print(f"after SIGKILL of lab up: gone in {took:.2f} s")
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        kill_leftovers(procs)


# ------------------------------------------------- normal kills and exits


def test_kill_and_kill_9_take_the_whole_tree_and_report_as_before(
    manager: ProcessManager,
) -> None:
    term = manager.launch_command("term", TREES["subshell"][0])
    hard = manager.launch_command("hard", TREES["stubborn"][0])
    daemon = manager.launch_command("daemon", TREES["daemon"][0])
    procs: list[psutil.Process] = []
    try:
        wait_for_tree(os.getpid(), TREES["subshell"][1] | TREES["stubborn"][1] | {"783"}, procs)
        manager.kill("term")  # k: SIGTERM
        manager.kill(hard.pid or 0, signal.SIGKILL)  # K, by pid
        assert manager.wait("term", 5).state == "killed by SIGTERM"
        assert manager.wait("hard", 5).state == "killed by SIGKILL"
        manager.kill_all()  # X: the daemon's setsid() grandchild goes too
        assert manager.wait("daemon", 5).state == "killed by SIGTERM"
        seconds_until_gone(procs, 2.0)
        assert term.pid and daemon.pid  # (the pids are the commands' own)
    finally:
        kill_leftovers(procs)


def test_what_a_command_leaves_behind_stops_when_it_ends(manager: ProcessManager) -> None:
    info = manager.launch_command("leaver", ["sh", "-c", "sleep 785 & echo $!"])
    assert manager.wait("leaver", 5).state == "exited 0"  # its own status, as before
    left = int(manager.output("leaver")[0])  # sleep 785, started in the background
    try:
        assert left != info.pid and not alive(left)  # gone before the exit was reported
    finally:
        if alive(left) and psutil.Process(left).cmdline() == ["sleep", "785"]:
            os.kill(left, signal.SIGKILL)


def test_exit_status_and_signal_of_the_command_are_its_own(manager: ProcessManager) -> None:
    manager.launch_command("three", ["sh", "-c", "exit 3"])
    manager.launch_command("usr1", ["sh", "-c", "kill -USR1 $$"])
    manager.launch_command("missing", ["sh", "-c", "exec no-such-program-xyz"])
    assert manager.wait("three", 5).state == "exited 3"
    assert manager.wait("usr1", 5).state == "killed by SIGUSR1"
    assert manager.wait("missing", 5).state == "exited 127"


def test_shutdown_takes_every_tree_down() -> None:
    m = ProcessManager(register_atexit=False)
    for name, (argv, _) in TREES.items():
        m.launch_command(name, argv)
    procs: list[psutil.Process] = []
    try:
        wait_for_tree(os.getpid(), ALL_SLEEPS, procs)
        started = time.monotonic()
        m.shutdown(timeout=1.0)
        assert time.monotonic() - started < 4
        seconds_until_gone(procs, 1.0)
        assert m.get("stubborn").state == "killed by SIGKILL"
    finally:
        kill_leftovers(procs)


def test_the_listen_table_pid_is_the_lab_table_pid(manager: ProcessManager) -> None:
    port = free_port()
    code = (
        "import socket, time\n"
        "s = socket.socket()\n"
        f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        "print('listening', flush=True); time.sleep(100)\n"
    )
    info = manager.launch_command("listener", [sys.executable, "-c", code])
    deadline = time.monotonic() + 5
    while manager.output("listener") != ["listening"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [s.pid for s in ProcNetSource().poll().listening() if s.local_port == port] == [info.pid]
    assert info.pid is not None
    assert os.getpgid(info.pid) == info.pid and os.getsid(info.pid) == info.pid
    assert manager.is_managed(info.pid)


# ----------------------------------------------------------- no privilege


UNPRIVILEGED_PARENT = r"""
import json, os, select, subprocess, sys
python, shim = sys.argv[1], sys.argv[2]
pids = []
for argv in json.loads(sys.argv[3]):
    read, write = os.pipe()
    env = dict(os.environ, OBSERVATORY_PARENT_PID=str(os.getpid()), OBSERVATORY_PID_FD=str(write))
    subprocess.Popen([python, "-I", "-S", shim, "--", *argv], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, start_new_session=True, pass_fds=(write,),
                     env=env)
    os.close(write)
    select.select([read], [], [], 10)
    pids.append(int(os.read(read, 64) or 0))
print(json.dumps(pids), flush=True)
sys.stdin.read()
"""


def as_user(user: pwd.struct_passwd) -> list[str]:
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--inh-caps=-all",
    ]


def _python_for(user: pwd.struct_passwd) -> str | None:
    """A Python interpreter ``user`` may run (ours may sit in root's home)."""
    for python in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if python is None:
            continue
        # Through sh: setpriv's own exec may succeed where the user's would not.
        done = subprocess.run(
            [
                *as_user(user),
                "sh",
                "-c",
                'exec "$0" -I -S -c "open($1).close()"',
                python,
                repr(str(SHIM)),
            ],
            capture_output=True,
            timeout=10,
        )
        if done.returncode == 0:
            return python
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="not root: the other tests are the proof")
def test_the_supervisor_needs_no_privilege() -> None:
    """As nobody (no cgroup, no capability): the trees still go when the parent is SIGKILLed."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    python = _python_for(nobody)
    if python is None:
        pytest.skip("no Python interpreter that the user nobody may run")
    trees = [TREES["background"][0], TREES["subshell"][0], [python, "-I", "-c", DAEMON]]
    parent = subprocess.Popen(
        [
            *as_user(nobody),
            python,
            "-I",
            "-c",
            UNPRIVILEGED_PARENT,
            python,
            str(SHIM),
            json.dumps(trees),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd="/",
    )
    procs: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        json.loads(parent.stdout.readline())
        wait_for_tree(parent.pid, {"777", "778", "779", "780", "783", "784"}, procs)
        assert {p.uids().real for p in procs} == {nobody.pw_uid}
        parent.kill()
        parent.wait(5)
        took = seconds_until_gone(procs, 2.0)
        print(f"as nobody, after SIGKILL of the parent: gone in {took:.2f} s")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        kill_leftovers(procs)
