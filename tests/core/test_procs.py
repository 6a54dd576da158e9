"""ProcessManager with real children and real loopback sockets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from app.core.procs import (
    LaunchError,
    OutputLine,
    ProcessError,
    ProcessExited,
    ProcessManager,
    ProcessStarted,
)
from app.core.sockets import ProcNetSource
from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], object], timeout: float = 5.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def listeners(port: int) -> list[int | None]:
    return [s.pid for s in ProcNetSource().poll().listening() if s.local_port == port]


@pytest.fixture
def manager() -> Iterator[ProcessManager]:
    with ProcessManager(register_atexit=False) as m:
        yield m


def start_server(m: ProcessManager, name: str = "server1", *extra: str) -> tuple[int, int]:
    port = free_port()
    info = m.launch_builtin(name, "tcp-server", [str(port), *extra])
    assert info.pid is not None
    wait_until(lambda: any("Listening" in line for line in m.output(name)), what="Listening")
    return port, info.pid


def test_server_listen_socket_belongs_to_the_child(manager: ProcessManager) -> None:
    port, pid = start_server(manager)
    assert listeners(port) == [pid]
    info = manager.get("server1")
    assert info.state == "running" and info.program == "tcp-server"
    assert info.command_line == f"tcp-server {port}"
    assert psutil.Process(pid).name() == "tcp-server"
    # Its own session and process group; stdin is /dev/null, not our terminal.
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"


def test_killing_the_server_closes_listener_and_client_sees_the_end(
    manager: ProcessManager,
) -> None:
    port, pid = start_server(manager)
    manager.launch_builtin("client1", "tcp-client", ["127.0.0.1", "hello", str(port)])
    wait_until(
        lambda: any(line.startswith("Client: 127.0.0.1:") for line in manager.output("server1"))
    )
    manager.kill("server1", signal.SIGKILL)
    server = manager.wait("server1", 5)
    assert server.state == "killed by SIGKILL"
    assert server.returncode == -signal.SIGKILL and server.stop_requested
    client = manager.wait("client1", 5)
    assert client.state == "exited 0"
    assert any("Server closed the connection" in line for line in client.output)
    assert listeners(port) == []
    assert gone(pid)


def test_events_started_output_exit_in_order(manager: ProcessManager) -> None:
    seen: list[object] = []
    manager.subscribe(seen.append)
    info = manager.launch_command(
        "printer", [sys.executable, "-c", "print('one'); print('two', flush=True)"]
    )
    manager.wait("printer", 5)
    wait_until(lambda: any(isinstance(e, ProcessExited) for e in seen))
    assert isinstance(seen[0], ProcessStarted) and seen[0].pid == info.pid
    lines = [e.text for e in seen if isinstance(e, OutputLine)]
    assert lines == ["one", "two"]
    assert isinstance(seen[-1], ProcessExited) and seen[-1].state == "exited 0"
    assert seen[-1].ended_well
    drained = manager.drain_events()
    assert [type(e).__name__ for e in drained] == [type(e).__name__ for e in seen]
    assert manager.drain_events() == []


def test_stderr_is_captured_and_a_failing_subscriber_breaks_nothing(
    manager: ProcessManager,
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    streams: list[tuple[str, str]] = []
    manager.subscribe(broken)
    manager.subscribe(
        lambda e: streams.append((e.stream, e.text)) if isinstance(e, OutputLine) else None
    )
    manager.launch_command(
        "err", [sys.executable, "-c", "import sys; sys.stderr.write('oops\\n'); sys.exit(3)"]
    )
    info = manager.wait("err", 5)
    assert info.state == "exited 3" and not info.ended_well
    assert ("stderr", "oops") in streams
    assert info.output == ("oops",)


def test_partial_line_without_newline_is_shown(manager: ProcessManager) -> None:
    manager.launch_command(
        "prompt",
        [
            sys.executable,
            "-c",
            "import sys,time; sys.stdout.write('Enter: '); sys.stdout.flush(); time.sleep(30)",
        ],
    )
    wait_until(lambda: manager.output("prompt") == ["Enter: "], timeout=3, what="partial line")


def test_sigkill_state_and_sigterm_of_a_builtin(manager: ProcessManager) -> None:
    start_server(manager, "a")
    start_server(manager, "b")
    manager.kill("a", signal.SIGKILL)
    manager.kill("b")  # SIGTERM: the built-in says so and exits 143
    assert manager.wait("a", 5).state == "killed by SIGKILL"
    b = manager.wait("b", 5)
    assert b.state == "stopped by SIGTERM (exit 143)" and b.ended_well
    assert "Stopped by SIGTERM" in b.output


def test_restart_gives_a_new_pid_with_the_same_command(manager: ProcessManager) -> None:
    port, pid = start_server(manager)
    info = manager.restart("server1")
    assert info.pid != pid and info.state == "running"
    assert gone(pid)
    wait_until(lambda: listeners(port) == [info.pid], what="new listener")
    assert manager.names() == ["server1"]


def test_names_are_unique_while_running(manager: ProcessManager) -> None:
    start_server(manager)
    with pytest.raises(LaunchError, match="already running"):
        manager.launch_command("server1", ["sleep", "1000"])
    manager.stop("server1")
    again = manager.launch_command("server1", ["sleep", "1000"])  # ended: replaced
    assert manager.names() == ["server1"] and manager.get("server1").pid == again.pid
    with pytest.raises(LaunchError, match="cannot be a process name"):
        manager.launch_command("bad name", ["sleep", "1"])


def test_refusals_in_words(manager: ProcessManager) -> None:
    with pytest.raises(LaunchError, match="command not found: no-such-program-xyz"):
        manager.launch_command("x", ["no-such-program-xyz"])
    with pytest.raises(LaunchError, match="required"):
        manager.launch_builtin("c", "tcp-client", ["127.0.0.1"])
    with pytest.raises(LaunchError, match="no built-in program"):
        manager.launch_builtin("c", "ftp-server", [])
    with pytest.raises(ProcessError, match="no process named 'ghost'"):
        manager.kill("ghost")
    with pytest.raises(ProcessError, match="was not started by the observatory"):
        manager.kill(1)
    manager.launch_command("quick", ["true"])
    manager.wait("quick", 5)
    with pytest.raises(ProcessError, match="already ended"):
        manager.kill("quick")


def test_kill_by_pid_reaches_the_whole_group_and_children_that_left_it(
    manager: ProcessManager,
) -> None:
    code = (
        "import subprocess, time\n"
        "a = subprocess.Popen(['sleep', '1000'])\n"
        "b = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "print(a.pid, b.pid, flush=True)\n"
        "time.sleep(1000)\n"
    )
    info = manager.launch_command("tree", [sys.executable, "-c", code])
    assert info.pid is not None
    wait_until(lambda: manager.output("tree"), what="grandchild pids")
    in_group, left_group = (int(p) for p in manager.output("tree")[0].split())
    assert os.getpgid(in_group) == info.pid and os.getpgid(left_group) != info.pid
    manager.kill(info.pid)
    assert manager.wait("tree", 5).state == "killed by SIGTERM"
    wait_until(lambda: gone(in_group) and gone(left_group), what="grandchildren gone")


def test_output_of_50_megabytes_stays_bounded(manager: ProcessManager) -> None:
    proc = psutil.Process()
    flood = (
        "import sys\nw = sys.stdout.write\nline = 'x' * 999 + '\\n'\n"
        "for i in range(50_000): w(line)\nw('last line\\n')\n"
    )
    endless = "import sys\nfor i in range(50): sys.stdout.write('y' * 1_000_000)\n"
    before = proc.memory_info().rss
    manager.launch_command("flood", [sys.executable, "-c", flood])
    manager.launch_command("endless", [sys.executable, "-c", endless])
    assert manager.wait("flood", 30).state == "exited 0"
    assert manager.wait("endless", 30).state == "exited 0"
    time.sleep(0.6)  # the exit waits up to 0.5 s for the last lines
    growth = proc.memory_info().rss - before
    assert growth < 30 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"
    lines = manager.output("flood")
    assert len(lines) == 1000 and lines[-1] == "last line"
    endless_lines = manager.output("endless")
    assert len(endless_lines) == 1  # one line, cut; the rest had no newline
    assert endless_lines[0].startswith("y" * 2000)
    assert endless_lines[0].endswith("[... line cut at 2000 bytes]")
    assert len(endless_lines[0]) < 2100
    assert len(manager.drain_events()) <= 1000


def test_cpu_percent_of_the_busy_handler(manager: ProcessManager) -> None:
    port, pid = start_server(manager, "busy", "--handler", "busy")
    _, idle_pid = start_server(manager, "idle")
    manager.launch_builtin("client", "tcp-client", ["127.0.0.1", "hello", str(port)])
    wait_until(lambda: any(line.startswith("Client:") for line in manager.output("busy")))
    manager.processes()
    time.sleep(1.0)
    by_name = {p.name: p for p in manager.processes()}
    assert by_name["busy"].cpu_percent is not None and by_name["busy"].cpu_percent > 25
    assert by_name["idle"].cpu_percent is not None and by_name["idle"].cpu_percent < 20
    manager.kill_all(signal.SIGKILL)
    assert manager.wait_all(5)
    assert all(p.cpu_percent is None for p in manager.processes())


def test_shutdown_stops_everything_and_refuses_new_launches() -> None:
    m = ProcessManager(register_atexit=False)
    _, server = start_server(m)
    # A command that ignores SIGTERM needs the SIGKILL after the grace time.
    stubborn = m.launch_command(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print('ready', flush=True); time.sleep(1000)",
        ],
    )
    wait_until(lambda: m.output("stubborn") == ["ready"])
    started = time.monotonic()
    m.shutdown(timeout=1.0)
    assert time.monotonic() - started < 4
    assert gone(server) and stubborn.pid is not None and gone(stubborn.pid)
    assert m.get("stubborn").state == "killed by SIGKILL"
    with pytest.raises(LaunchError, match="shut down"):
        m.launch_command("late", ["sleep", "1"])
    m.shutdown()  # idempotent


def test_shim_reports_command_not_found_and_exits_127() -> None:
    for argv in (
        [sys.executable, "-m", "app.core.shim", "--", "no-such-program-xyz"],
        [sys.executable, "-I", "-S", str(ROOT / "app/core/shim.py"), "--", "./nowhere"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=10)
        assert done.returncode == 127
        assert done.stderr in (
            "command not found: no-such-program-xyz\n",
            "no such file: ./nowhere\n",
        )
        assert done.stdout == ""


def test_shim_gives_the_command_default_sigpipe_and_the_same_pid(
    manager: ProcessManager,
) -> None:
    info = manager.launch_command("status", ["sh", "-c", "cat /proc/$$/status; exec sleep 100"])
    last = "nonvoluntary_ctxt_switches"
    wait_until(lambda: any(line.startswith(last) for line in manager.output("status")))
    fields = dict(line.split(":\t", 1) for line in manager.output("status") if ":\t" in line)
    assert int(fields["Pid"]) == info.pid  # the command's own pid, not its supervisor's
    ignored = int(fields["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    wait_until(lambda: psutil.Process(info.pid).name() == "sleep")  # exec'd in place: same pid
    # The signals its supervisor blocks are not blocked in the command.
    assert "SigBlk:\t0000000000000000" in Path(f"/proc/{info.pid}/status").read_text()
    # Between us and the command: its supervisor (app.core.shim), our child.
    supervisor = psutil.Process(int(fields["PPid"]))
    assert supervisor.ppid() == os.getpid() and supervisor.name() == "obs-supervisor"
    manager.kill("status", signal.SIGKILL)
    assert manager.wait("status", 5).state == "killed by SIGKILL"


def test_shim_refuses_to_start_when_the_parent_is_already_gone() -> None:
    env = dict(os.environ, OBSERVATORY_PARENT_PID="999999999")
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "app/core/shim.py"), "--", "echo", "hi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
    )
    assert done.returncode == 1 and done.stdout == ""


def test_kill_foreign_and_describe_foreign(manager: ProcessManager) -> None:
    victim = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        # Right after Popen the child may still be in exec(): no command line yet.
        wait_for(lambda: psutil.Process(victim.pid).cmdline(), what="the victim's exec")
        about = manager.describe_foreign(victim.pid)
        assert about.cmdline == ("sleep", "1000") and about.managed_name is None
        assert about.user == psutil.Process().username()
        manager.kill_foreign(victim.pid, signal.SIGKILL)
        assert victim.wait(5) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    with pytest.raises(ProcessError, match=f"there is no process with pid {victim.pid}"):
        manager.kill_foreign(victim.pid)
    with pytest.raises(ProcessError, match="pid 1 is the system's init process"):
        manager.kill_foreign(1)
    with pytest.raises(ProcessError, match="the observatory itself"):
        manager.kill_foreign(os.getpid())
    with pytest.raises(ProcessError, match="not a process id"):
        manager.kill_foreign(0)
    managed = manager.launch_command("mine", ["sleep", "1000"])
    assert managed.pid is not None
    assert manager.describe_foreign(managed.pid).managed_name == "mine"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a victim as another user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_kill_foreign_refusal_in_words_when_the_os_says_no() -> None:
    # The victim belongs to nobody; the checker runs as root WITHOUT the
    # CAP_KILL capability, so the kernel answers EPERM as it would for a student.
    victim = subprocess.Popen(
        ["sleep", "1000"], user=65534, group=65534, extra_groups=[], start_new_session=True
    )
    try:
        code = (
            "import sys\nfrom app.core.procs import ProcessManager, ProcessError\n"
            "m = ProcessManager()\n"
            "try:\n    m.kill_foreign(int(sys.argv[1]))\n"
            "except ProcessError as e:\n    print(e)\nelse:\n    print('signalled')\n"
        )
        done = subprocess.run(
            [
                "setpriv",
                "--inh-caps=-kill",
                "--bounding-set=-kill",
                sys.executable,
                "-c",
                code,
                str(victim.pid),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=20,
        )
        user = psutil.Process(victim.pid).username()
        assert done.stdout == (
            f"the operating system refused: pid {victim.pid} belongs to {user} "
            "(Operation not permitted)\n"
        ), done.stderr
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_children_survive_the_short_lived_thread_that_asked_for_them(
    manager: ProcessManager,
) -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked ends. A UI launches
    # from short-lived workers: the manager's own launcher thread must fork.
    result: list[object] = []

    def worker() -> None:
        result.append(manager.launch_builtin("srv", "tcp-server", [str(free_port())]))
        result.append(manager.launch_command("cmd", ["sleep", "1000"]))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(result) == 2
    wait_until(lambda: any("Listening" in line for line in manager.output("srv")))
    time.sleep(0.5)  # a parent-death signal would have arrived by now
    assert [p.state for p in manager.processes()] == ["running", "running"]


def test_signal_handlers_only_from_the_main_thread(manager: ProcessManager) -> None:
    errors: list[Exception] = []

    def worker() -> None:
        try:
            manager.install_signal_handlers()
        except ProcessError as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert [str(e) for e in errors] == [
        "signal handlers can only be installed from the main thread"
    ]


def test_second_shutdown_waits_for_the_first_to_kill_a_stubborn_child() -> None:
    """Quitting the dashboard: shutdown() on a thread, then again before exit.

    The second call used to return at once, and the process exit ended the
    first call's thread before its SIGKILL: a child ignoring SIGTERM survived.
    """
    m = ProcessManager(register_atexit=False)
    info = m.launch_command(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
    )
    deadline = time.monotonic() + 10
    while "ready" not in m.output("stubborn") and time.monotonic() < deadline:
        time.sleep(0.05)
    threading.Thread(target=m.shutdown, daemon=True).start()
    time.sleep(0.1)
    m.shutdown()
    assert info.pid is not None
    assert not psutil.pid_exists(info.pid) or (
        psutil.Process(info.pid).status() == psutil.STATUS_ZOMBIE
    )


def test_kill_foreign_refuses_a_pid_that_is_another_process_now() -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with ProcessManager(register_atexit=False) as m:
            who = m.describe_foreign(victim.pid)
            assert who.created is not None
            with pytest.raises(ProcessError, match="now another process"):
                m.kill_foreign(victim.pid, created=who.created - 100.0)
            assert victim.poll() is None  # nothing was sent
            m.kill_foreign(victim.pid, created=who.created)
            assert victim.wait(5) == -signal.SIGTERM
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
