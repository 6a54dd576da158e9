"""The lecture's own C programs (app/labs/c): compiled on first use, run for real.

Without a C compiler these skip with the install hint; under CI (``CI`` set, or
``OBSERVATORY_REQUIRE_CC=1``) they fail instead.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from app.core import cprograms

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A compiler (or a skip) and a fresh cache folder for the builds."""
    if cprograms.compiler() is None:
        if os.environ.get("CI") or os.environ.get("OBSERVATORY_REQUIRE_CC") == "1":
            pytest.fail(f"a C compiler is required under CI: {cprograms.INSTALL_HINT}")
        pytest.skip(cprograms.INSTALL_HINT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    yield tmp_path / "connection-observatory" / "c"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"{proc.args!r} ended: exit {proc.wait(5)}"
    return line.rstrip("\n")


def test_built_once_into_the_cache_and_again_when_the_source_changes(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = cprograms.build("tcp_server1")
    assert server.parent.parent == cache and server.name == "tcp_server1"
    assert os.access(server, os.X_OK)
    built_at = server.stat().st_mtime_ns
    assert cprograms.build("tcp_server1").stat().st_mtime_ns == built_at  # not again
    assert [p.name for p in server.parent.iterdir()] == ["tcp_server1"]  # no temporary left

    sources = tmp_path / "src"  # an upgrade changed the source: compiled again, elsewhere
    sources.mkdir()
    text = cprograms.source("tcp_server1").read_text()
    (sources / "tcp_server1.c").write_text(text + "/* changed */\n")
    monkeypatch.setattr(cprograms, "SOURCES", sources)
    changed = cprograms.build("tcp_server1")
    assert changed.name == "tcp_server1" and changed != server and os.access(changed, os.X_OK)


def test_no_compiler_says_how_to_install_one(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(cprograms.CProgramUnavailable, match=r"apt install gcc \(Debian/Ubuntu\)"):
        cprograms.build("tcp_client1")


def test_a_compile_error_shows_the_compilers_first_lines(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "tcp_client1.c").write_text("int main(void) { return undeclared; }\n")
    monkeypatch.setattr(cprograms, "SOURCES", sources)
    with pytest.raises(cprograms.CProgramUnavailable) as caught:
        cprograms.build("tcp_client1")
    assert "tcp_client1.c did not compile" in str(caught.value)
    assert "undeclared" in str(caught.value)
    assert not list(cache.glob("*/*"))  # neither a binary nor a temporary file


def test_the_sources_compile_with_every_warning_an_error(cache: Path, tmp_path: Path) -> None:
    cc = cprograms.compiler()
    assert cc is not None
    for name in cprograms.NAMES:
        argv = [*cc, *cprograms.FLAGS, "-Werror", "-o", str(tmp_path / name)]
        done = subprocess.run(
            [*argv, str(cprograms.source(name))], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()  # by its pid: only what this test started
    proc.wait(5)


def test_client_prints_the_sockaddr_bytes_and_the_server_spins(cache: Path) -> None:
    server_exe, client_exe = (cprograms.build(n) for n in cprograms.NAMES)
    port = free_port()
    server = subprocess.Popen([str(server_exe), str(port)], stdout=subprocess.PIPE, text=True)
    client: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 5
        while not any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port
            for c in psutil.Process(server.pid).net_connections("tcp")
        ):
            assert time.monotonic() < deadline and server.poll() is None, "no LISTEN"
            time.sleep(0.05)
        client = subprocess.Popen(
            [str(client_exe), "127.0.0.1", "hello", str(port)], stdout=subprocess.PIPE, text=True
        )
        dumps = [read_line(client) for _ in range(4)]
        assert dumps[0] == "".join(f"[{i}]=0," for i in range(16))  # after memset
        assert dumps[1].startswith("[0]=2,[1]=0,[2]=0,")  # after sin_family
        assert read_line(client) == (
            f"Sent 5 bytes to 127.0.0.1:{port}; holding the connection until killed"
        )
        shown = subprocess.run(
            [sys.executable, "-m", "app", "sockaddr", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[0]
        assert dumps[3] == shown  # exactly the bytes observatory sockaddr shows

        client_port = next(
            c.laddr.port
            for c in psutil.Process(client.pid).net_connections("tcp")
            if c.raddr and c.raddr.port == port
        )
        assert read_line(server) == f"Client: 127.0.0.1:{client_port}"
        spinning = psutil.Process(server.pid)
        spinning.cpu_percent()
        percents = []
        for _ in range(4):  # within 2 s
            time.sleep(0.5)
            percents.append(spinning.cpu_percent())
            if percents[-1] > 50:
                break
        assert percents[-1] > 50, f"handle_client() should spin: CPU {percents}"
    finally:
        if client is not None:
            kill(client)
        kill(server)


def test_errors_in_words(cache: Path) -> None:
    client = cprograms.build("tcp_client1")
    port = free_port()  # nobody listens on it
    done = subprocess.run(
        [str(client), "127.0.0.1", "hello", str(port)], capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 1
    assert done.stderr == f"tcp_client1: connect to 127.0.0.1:{port}: Connection refused\n"
    done = subprocess.run([str(client), "localhost", "hello", "1"], capture_output=True, text=True)
    assert done.returncode == 1 and "is not an IPv4 address" in done.stderr
    server = cprograms.build("tcp_server1")
    done = subprocess.run([str(server)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 1 and done.stderr == f"Usage: {server} <port>\n"
    done = subprocess.run([str(server), "70000"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 1 and "port must be a number 1-65535" in done.stderr


def test_a_scenario_checks_and_starts_the_c_programs(cache: Path, tmp_path: Path) -> None:
    """``program = "tcp_server1"`` in a scenario: its arguments checked like the lecture's
    ./tcp_server1 PORT, compiled at start, run as ./tcp_server1 in the cache folder."""
    from app.core.procs import ProcessManager
    from app.core.scenario import ScenarioError, parse_scenario
    from app.core.scenario_start import start_scenario

    with pytest.raises(ScenarioError) as refused:
        parse_scenario(
            '[[process]]\nname = "s"\nprogram = "tcp_server1"\nargs = ["6000", "x"]\n'
            '[[process]]\nname = "c"\nprogram = "tcp_client1"\nargs = ["localhost", "hi", "1"]\n'
            '[[process]]\nname = "p"\nprogram = "tcp_server1"\nargs = ["70000"]\n',
            "s.toml",
        )
    assert refused.value.errors == (
        's.toml: process #1 "s": key "args": tcp_server1 needs PORT, '
        "like the lecture's ./tcp_server1 PORT",
        's.toml: process #2 "c": key "args": tcp_client1 needs an IPv4 address first '
        "(e.g. 127.0.0.1), not 'localhost'",
        's.toml: process #3 "p": key "args": port must be a number from 1 to 65535, not 70000',
    )
    port = free_port()
    scenario = parse_scenario(
        f'[[process]]\nname = "server1"\nprogram = "tcp_server1"\nargs = ["{port}"]\n'
        f'[[process]]\nname = "client1"\nprogram = "tcp_client1"\n'
        f'args = ["127.0.0.1", "hello", "{port}"]\ndelay = 0.3\n',
        "c.toml",
        folder=tmp_path,
    )
    assert [e.command_line for e in scenario.entries] == [
        f"./tcp_server1 {port}",
        f"./tcp_client1 127.0.0.1 hello {port}",
    ]
    manager = ProcessManager()
    try:
        server, _client = start_scenario(manager, scenario)
        assert server.argv == ("./tcp_server1", str(port))
        assert psutil.Process(server.pid).cwd() == str(cprograms.build("tcp_server1").parent)
        deadline = time.monotonic() + 10
        while not any(line.startswith("Client: 127.0.0.1:") for line in manager.output("server1")):
            assert time.monotonic() < deadline, manager.output("server1")
            time.sleep(0.05)
        assert any(line.startswith("Sent 5 bytes") for line in manager.output("client1"))
    finally:
        manager.shutdown()


def test_a_scenario_c_program_without_a_compiler_says_how_to_get_one(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.procs import LaunchError, ProcessManager
    from app.core.scenario import parse_scenario
    from app.core.scenario_start import start_scenario

    scenario = parse_scenario(
        '[[process]]\nname = "server1"\nprogram = "tcp_server1"\nargs = ["6000"]\n', "c.toml"
    )
    monkeypatch.setenv("CC", "no-such-compiler-here")
    manager = ProcessManager()
    try:
        with pytest.raises(LaunchError) as refused:
            start_scenario(manager, scenario)
        assert str(refused.value) == f"server1: {cprograms.INSTALL_HINT}"
        assert manager.processes() == []
    finally:
        manager.shutdown()


def test_a_cache_folder_that_cannot_be_written_is_said_in_words(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"  # (a file where the folder should be: refused to root too)
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    with pytest.raises(cprograms.CProgramUnavailable) as refused:
        cprograms.build("tcp_server1")
    words = str(refused.value)
    assert words.startswith(f"tcp_server1 is compiled into {blocked}/connection-observatory/c/")
    assert words.endswith("set XDG_CACHE_HOME to a folder you can write")


def test_a_compiled_program_that_others_could_have_written_is_not_run(cache: Path) -> None:
    """A shared cache: a binary (or its folder) that is not this user's alone is refused,
    in words, instead of being run as this user."""
    server = cprograms.build("tcp_server1")
    assert stat.S_IMODE(server.parent.stat().st_mode) == 0o700  # made private
    server.parent.chmod(0o777)  # as if another user could have put it there
    with pytest.raises(cprograms.CProgramUnavailable) as refused:
        cprograms.build("tcp_server1")
    assert f"{server} is not run: {server.parent} is not yours alone" in str(refused.value)
    assert "mode 777" in str(refused.value)
    server.parent.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(server, 1, -1)  # another user's binary
    else:
        server.chmod(0o775)  # one the group may rewrite
    with pytest.raises(cprograms.CProgramUnavailable) as refused:
        cprograms.build("tcp_server1")
    assert f"{server} is not run: {server} is not yours alone" in str(refused.value)
