"""``observatory lesson run|check`` as a teacher types them: the real CLI in a subprocess,
real lab processes, real sockets, real nmap; the shipped lecture as root and as nobody."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.lesson import load_lesson
from tests.conftest import REPO, AsNobody, alive, free_port, observatory, wait_for
from tests.nmaputil import require_nmap

SESSION4 = REPO / "lessons" / "session4.toml"
STARTED = re.compile(r"^  started (\S+) \(pid (\d+)\)", re.MULTILINE)


def marks(stdout: str) -> tuple[list[str], list[str], list[str]]:
    """The ✓, ✗ and skipped lines of a run."""
    lines = stdout.splitlines()
    return (
        [line[2:] for line in lines if line.startswith("✓ ")],
        [line[2:] for line in lines if line.startswith("✗ ")],
        [line[2:] for line in lines if line.startswith("- ") and line.endswith("(skipped)")],
    )


def started_pids(stdout: str) -> list[int]:
    return [int(pid) for _, pid in STARTED.findall(stdout)]


def assert_all_gone(stdout: str) -> None:
    pids = started_pids(stdout)
    assert pids, stdout
    for pid in pids:
        assert not alive(pid), f"pid {pid} outlived the lesson"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder every user may read and write (pytest's own are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="observatory-lesson-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_until_enter(path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """`lesson run FILE` started, and its lines read until it waits for Enter."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "lesson", "run", str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Press Enter"):
            break
    return proc, seen


def test_the_lecture_passes(request: pytest.FixtureRequest) -> None:
    require_nmap()
    if os.geteuid() == 0:
        request.getfixturevalue("blackhole")  # the lab hosts' 10.0.2.x go nowhere else
    lesson = load_lesson(SESSION4)
    done = observatory("lesson", "run", "lessons/session4.toml", "--auto", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    held, failed, skipped = marks(done.stdout)
    assert not failed
    assert len(held) + len(skipped) == lesson.expectation_count >= 12
    if os.geteuid() == 0:  # CI: root, with nmap and a C compiler: nothing is skipped
        assert not skipped, done.stdout
        assert "lab hosts up (server 10.0.2.15/24, 10.0.2.100/24; client 10.0.2.16/24)" in (
            done.stdout
        )
        assert "lab hosts removed" in done.stdout
        assert f"all {lesson.expectation_count} expectations held" in done.stdout
    # One line per sentence of the file, in its order.
    said = [
        line[2:].removesuffix(" (skipped)")
        for line in done.stdout.splitlines()
        if line[:2] in ("✓ ", "- ") and (line[0] == "✓" or line.endswith(" (skipped)"))
    ]
    assert said == [e.text for s in lesson.steps for e in s.expect]
    assert_all_gone(done.stdout)


def test_the_lecture_passes_as_nobody(as_nobody: AsNobody, public_dir: Path) -> None:
    """Unprivileged: the steps with lab hosts are skipped, saying why; the rest hold."""
    require_nmap()
    lesson_file = public_dir / "session4.toml"
    shutil.copy(SESSION4, lesson_file)
    lesson_file.chmod(0o644)
    cache = public_dir / "cache"  # nobody's HOME is not nobody's: the C programs go here
    # The fixture copies the app and psutil for nobody; the scans need python-nmap too.
    import nmap  # type: ignore[import-untyped,unused-ignore]

    site = public_dir / "site"
    shutil.copytree(Path(nmap.__file__).parent, site / "nmap")
    for path in [site, *site.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    code = (
        "import os, sys; "
        f"sys.path.append({str(site)!r}); "
        f"os.environ['XDG_CACHE_HOME'] = {str(cache)!r}; "
        "from app.cli import main; "
        f"sys.exit(main(['lesson', 'run', {str(lesson_file)!r}, '--auto']))"
    )
    done = as_nobody("-c", code, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    held, failed, skipped = marks(done.stdout)
    assert not failed
    lesson = load_lesson(SESSION4)
    host_sentences = [e.text for s in lesson.steps if s.needs_hosts for e in s.expect]
    assert [s.removesuffix(" (skipped)") for s in skipped] == host_sentences
    assert len(held) == lesson.expectation_count - len(host_sentences)
    reason = (
        "  skipped: it needs the lab hosts (network namespaces), and there are none: "
        "Lab hosts need root"
    )
    assert done.stdout.count(reason) == sum(s.needs_hosts for s in lesson.steps)
    assert "skipped here: steps 10, 11" in done.stdout
    assert_all_gone(done.stdout)


def small_lesson(tmp_path: Path, port: int, expect: list[str], more: str = "") -> Path:
    path = tmp_path / "small.toml"
    sentences = ", ".join(f'"{e}"' for e in expect)
    path.write_text(
        f"""
title = "Small"

[[step]]
title = "A server"
expect = [{sentences}]

[[step.process]]
name = "s1"
program = "tcp-server"
args = ["{port}"]
{more}
""",
        encoding="utf-8",
    )
    return path


def test_an_expectation_that_cannot_hold_fails_naming_it(tmp_path: Path) -> None:
    port = free_port()
    path = small_lesson(
        tmp_path, port, [f"listen {port}", f"listen {port} on 0.0.0.0", f"no listen {port}"]
    )
    done = observatory("lesson", "run", str(path), "--auto", "--timeout", "0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    held, failed, _ = marks(done.stdout)
    assert held == [f"listen {port}"]
    assert failed == [
        f"listen {port} on 0.0.0.0: {port} is listened on by s1 on 127.0.0.1, not 0.0.0.0",
        f"no listen {port}: {port} is still listened on by s1 on 127.0.0.1",
    ]
    assert "2 of 3 expectations did not hold:" in done.stdout
    assert f"  ✗ no listen {port}: {port} is still listened on by s1 on 127.0.0.1" in done.stdout
    assert_all_gone(done.stdout)


def test_a_bad_file_is_refused_naming_step_and_sentence(tmp_path: Path) -> None:
    port = free_port()
    path = small_lesson(tmp_path, port, [f"listen {port}", "lisen 6000", "established 99999"])
    for action in (["check"], ["run", "--auto"]):
        done = observatory("lesson", action[0], str(path), *action[1:])
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f'{path}: step 1 "A server": expect #2 "lisen 6000": unknown sentence: it starts '
            "with 'lisen'; a sentence starts with one of listen, established, backlog, state, "
            "udp, scan, cpu, output, service (did you mean 'listen'?)",
            f'{path}: step 1 "A server": expect #3 "established 99999": a port is a number '
            "from 1 to 65535; 99999 is outside that range",
            f"observatory lesson: {path}: 2 mistakes, nothing was started",
        ]
    missing = observatory("lesson", "run", str(tmp_path / "gone.toml"))
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"{tmp_path / 'gone.toml'}: no such file")


def test_check_names_the_shipped_lesson(tmp_path: Path) -> None:
    lesson = load_lesson(SESSION4)
    done = observatory("lesson", "check", "session4", cwd=tmp_path)  # by name, anywhere
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == (
        f"{SESSION4}: Session 4: TCP sockets: {len(lesson.steps)} steps, "
        f"{lesson.expectation_count} expectations, ready to run"
    )
    assert "(needs lab hosts: root)" in done.stdout


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "evil.toml"
    path.write_text(
        f"""
[[step]]
title = "Evil \\u001b[2J title \\u202e"
say = "bell \\u0007"
expect = ["output e1 contains pwned"]

[[step.process]]
name = "e1"
command = ["{sys.executable}", "-c", "print('\\\\x1b]0;pwned\\\\x07 \\\\x1b[31m red')"]
""",
        encoding="utf-8",
    )
    done = observatory("lesson", "run", str(path), "--auto")
    assert done.returncode == 0, done.stdout + done.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in done.stdout
    assert "Evil \\x1b[2J title \\u202e" in done.stdout
    assert "[e1] \\x1b]0;pwned\\x07 \\x1b[31m red" in done.stdout


def test_enter_goes_on_and_sigterm_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    second = f"""
[[step]]
title = "Then"
expect = ["listen {port}"]
"""
    path = small_lesson(tmp_path, port, [f"listen {port}"], more=second)
    # End of input counts as Enter: the run goes through.
    done = observatory("lesson", "run", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Press Enter for step 2: Then  (Ctrl+C ends)" in done.stdout
    # Waiting for Enter, it gets SIGTERM: it stops what it started and says so.
    proc, seen = run_until_enter(path)
    try:
        pids = started_pids("".join(seen))
        assert len(pids) == 1 and alive(pids[0]), seen
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert "stopping what the lesson started: s1" in out
    assert "got SIGTERM: stopped" in out
    wait_for(lambda: not alive(pids[0]), 5, "the lesson's server to be gone")


def test_sigterm_removes_the_lab_hosts(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Interrupted with its lab hosts up: the processes end, then the hosts are removed
    (the blackhole fixture checks that no namespace, link or route is left)."""
    if os.geteuid() != 0:
        pytest.skip("lab hosts need root")
    request.getfixturevalue("blackhole")
    path = tmp_path / "hosts.toml"
    path.write_text(
        """
[[host]]
name = "server"
address = "10.0.2.15/24"

[[step]]
title = "On the host"
expect = ["listen 6000 on 10.0.2.15 at server"]

[[step.process]]
name = "h1"
host = "server"
program = "tcp-server"
args = ["6000", "--bind", "10.0.2.15"]

[[step]]
title = "Never reached"
expect = ["no listen 6000 at server"]
""",
        encoding="utf-8",
    )
    proc, seen = run_until_enter(path)
    try:
        assert "✓ listen 6000 on 10.0.2.15 at server\n" in seen, seen
        pids = started_pids("".join(seen))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert "lab hosts removed" in out
    assert pids and not any(alive(pid) for pid in pids)
