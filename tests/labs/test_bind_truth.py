"""The lab server's "port in use" tells the truth: what holds the port, and a command that shows it.

The old server here is like the lecture's tcp_server1 (no SO_REUSEADDR), killed with
SIGKILL while its client is still connected: its end lingers in FIN_WAIT2, then
TIME_WAIT, held by the kernel, with no program listening anywhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from app.labs._common import port_holders
from tests.conftest import observatory, wait_for
from tests.labs.procs import one_error_line, run_lab

pytestmark = pytest.mark.timeout(60)


def snapshot_rows(*args: str) -> list[list[str]]:
    done = observatory("snapshot", *args)
    assert done.returncode == 0, done.stderr
    assert "(no sockets match)" not in done.stdout, done.stdout
    return [line.split() for line in done.stdout.splitlines()]


def test_fin_wait2_of_a_killed_server_is_named(killed_server: tuple[int, socket.socket]) -> None:
    port, client = killed_server
    peer = client.getsockname()[1]
    words = one_error_line(run_lab("tcp-server", str(port)), "tcp-server")
    assert words == (
        f"port {port} is still held on 127.0.0.1: 127.0.0.1:{port} -> 127.0.0.1:{peer} is in "
        "FIN_WAIT2 (no process has it: the kernel keeps the end of a connection whose program "
        "closed it or was killed; it stays about 60 s after the close; if the peer closes "
        "meanwhile, TIME_WAIT holds the port about 60 s more); this "
        "server sets SO_REUSEADDR, so the program that had the port did not, and Linux needs "
        f"both: wait, or pick another port (see it with `observatory snapshot --all --port "
        f"{port}`)"
    )
    assert "listening" not in words
    rows = snapshot_rows("--all", "--port", str(port))
    assert any(r[3] == f"127.0.0.1:{port}" and r[5] == "FIN_WAIT2" for r in rows[1:] if len(r) > 5)


def test_time_wait_after_the_peer_closes(killed_server: tuple[int, socket.socket]) -> None:
    port, client = killed_server
    client.close()
    wait_for(
        lambda: any(h[0] == "TIME_WAIT" for h in port_holders(port, "0.0.0.0")), what="TIME_WAIT"
    )
    words = one_error_line(run_lab("tcp-server", str(port), "--bind", "0.0.0.0"), "tcp-server")
    assert words.startswith(f"port {port} is still held on 0.0.0.0: 127.0.0.1:{port} -> ")
    assert "is in TIME_WAIT (no process has it" in words
    assert "it stays for about 60 s after the close" in words
    assert f"`observatory snapshot --all --port {port}`" in words
    rows = snapshot_rows("--all", "--port", str(port))
    assert any(r[3] == f"127.0.0.1:{port}" and r[5] == "TIME_WAIT" for r in rows[1:] if len(r) > 5)


def test_a_listener_is_named_and_the_command_finds_it(sockets: list[socket.socket]) -> None:
    holder = socket.socket(socket.AF_INET6)
    sockets.append(holder)
    holder.bind(("::", 0))  # dual-stack: it takes IPv4 too
    holder.listen(1)
    port = holder.getsockname()[1]
    words = one_error_line(run_lab("tcp-server", str(port)), "tcp-server")
    assert words == (
        f"port {port} is already in use on 127.0.0.1: a program is listening on [::]:{port} "
        f"(find it with `observatory snapshot --listen --port {port}`); stop it or pick "
        "another port"
    )
    rows = snapshot_rows("--listen", "--port", str(port))
    assert any(r[3] == f"[::]:{port}" for r in rows[1:])


def test_holders_on_other_addresses_do_not_count(sockets: list[socket.socket]) -> None:
    holder = socket.socket()
    sockets.append(holder)
    holder.bind(("127.0.0.2", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    assert port_holders(port, "127.0.0.3") == []
    assert [h[:2] for h in port_holders(port, "0.0.0.0")] == [("LISTEN", f"127.0.0.2:{port}")]
    assert [h[:2] for h in port_holders(port, "::ffff:127.0.0.2")] == [
        ("LISTEN", f"127.0.0.2:{port}")
    ]


def test_no_reuseaddr_server_killed_with_a_client_blocks_its_own_restart() -> None:
    """``tcp-server --no-reuseaddr`` is the lecture's tcp_server1 in this respect: killed
    while a client stays connected, it cannot start again on its port for a while, and
    says why; with SO_REUSEADDR on both sides the restart works."""
    from tests.conftest import free_port
    from tests.labs.procs import lab_argv

    for reuse_first, expect_fail in ((False, True), (True, False)):
        port = free_port(addr="0.0.0.0")
        extra = [] if reuse_first else ["--no-reuseaddr"]
        first = subprocess.Popen(
            lab_argv("tcp-server", str(port), "--bind", "0.0.0.0", *extra),
            stdout=subprocess.PIPE,
            text=True,
        )
        client = None
        try:
            assert first.stdout is not None
            assert "Listening" in first.stdout.readline()
            client = socket.create_connection(("127.0.0.1", port))
            assert first.stdout.readline().startswith("Client:")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(5)
            wait_for(
                lambda: any(h[0] == "FIN_WAIT2" for h in port_holders(port, "0.0.0.0")),  # noqa: B023
                what="the killed server's FIN_WAIT2",
            )
            again = (
                run_lab("tcp-server", str(port), "--bind", "0.0.0.0", timeout=3)
                if expect_fail
                else None
            )
            if again is not None:
                words = one_error_line(again, "tcp-server")
                assert "FIN_WAIT2" in words and "SO_REUSEADDR" in words, words
            else:
                second = subprocess.Popen(
                    lab_argv("tcp-server", str(port), "--bind", "0.0.0.0"),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert second.stdout is not None
                    assert "Listening" in second.stdout.readline()
                finally:
                    second.kill()
                    second.wait(5)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(5)
            if client is not None:
                client.close()


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("0.0.0.0", "127.0.0.1", True),
        ("0.0.0.0", "::1", False),
        ("::", "127.0.0.1", True),
        ("::1", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "::1", True),
    ],
)
def test_which_addresses_overlap_as_the_kernel_says(a: str, b: str, overlap: bool) -> None:
    """The lab's own copy of the overlap rule (labs may not import app.core.portuse): a
    ::1 listener does not block a bind of 0.0.0.0 (binding ::1 sets IPV6_V6ONLY)."""
    from app.labs._common import _covers

    assert _covers(a, b) is overlap and _covers(b, a) is overlap
