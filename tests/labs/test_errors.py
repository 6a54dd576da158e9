"""Errors a student causes: one line of words on stderr, exit code 1, nothing started."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Callable

import psutil
import pytest

from app.labs._common import unprivileged_port_start
from tests.conftest import free_port, wait_for
from tests.labs.procs import (
    Labs,
    hex_port,
    listening_line,
    one_error_line,
    proc_net_rows,
    run_lab,
    unused_low_port,
)

pytestmark = pytest.mark.timeout(30)


def test_port_in_use(sockets: list[socket.socket]) -> None:
    holder = socket.socket()
    sockets.append(holder)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    words = one_error_line(run_lab("tcp-server", str(port)), "tcp-server")
    assert words == (
        f"port {port} is already in use on 127.0.0.1: a program is listening on "
        f"127.0.0.1:{port} (find it with `observatory snapshot --listen --port {port}`); "
        "stop it or pick another port"
    )


def test_port_in_use_by_a_lab_server_on_any_address(lab: Labs) -> None:
    port = free_port()
    lab.server("tcp-server", str(port), "--bind", "0.0.0.0")
    words = one_error_line(run_lab("tcp-server", str(port)), "tcp-server")
    assert words.startswith(f"port {port} is already in use on 127.0.0.1")


def test_udp_port_in_use(sockets: list[socket.socket]) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(holder)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    words = one_error_line(run_lab("udp-server", str(port)), "udp-server")
    assert words == (
        f"port {port} is already in use on 127.0.0.1: another program has it "
        f"(find it with `observatory snapshot --udp --port {port}`)"
    )


def test_restart_is_not_blocked_by_time_wait(lab: Labs) -> None:
    """SO_REUSEADDR: the server closes first (kill), its side lingers in TIME_WAIT."""
    port = free_port()
    server = lab.server("tcp-server", str(port))
    client = lab.start("tcp-client", "127.0.0.1", "hi", str(port))
    client.expect("Holding")
    server.expect("Client:")
    server.proc.kill()
    assert client.wait() == 0
    wait_for(
        lambda: any(
            row[1] == f"0100007F:{hex_port(port)}" and row[3] == "06"  # TIME_WAIT
            for row in proc_net_rows("tcp")
        ),
        timeout=10,  # (3 s was short on a loaded machine: 1 run in 8)
    )
    again = lab.start("tcp-server", str(port))
    assert again.next_line() == listening_line(port)


def test_low_port_needs_root(as_nobody: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    port = unused_low_port()
    if port is None:
        pytest.skip("every port from 900 to 1023 is taken here")
    if unprivileged_port_start() <= port:
        pytest.skip(f"this machine lets every user bind ports from {unprivileged_port_start()}")
    code = f"import sys; from app.labs.tcp_server import main; sys.exit(main(['{port}']))"
    try:
        result = as_nobody("-c", code, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tcp-server bound port {port} as user nobody")
    assert one_error_line(result, "tcp-server") == (
        "ports below 1024 need root: try a port from 1024 to 65535"
    )


def _non_local_test_address() -> str:
    local = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    # Documentation ranges (RFC 5737): never a real host. bind() alone sends nothing.
    for candidate in ("192.0.2.123", "198.51.100.123", "203.0.113.123"):
        if candidate not in local:
            return candidate
    pytest.skip("every documentation address tried is configured on this machine")


def test_bind_to_an_address_this_machine_does_not_have() -> None:
    with open("/proc/sys/net/ipv4/ip_nonlocal_bind", encoding="ascii") as fh:
        if fh.read().strip() != "0":
            pytest.skip("ip_nonlocal_bind is on: binding any address succeeds here")
    address = _non_local_test_address()
    for program in ("tcp-server", "udp-server"):
        words = one_error_line(run_lab(program, str(free_port()), "--bind", address), program)
        assert words == f"{address} is not an address of this machine (see `ip addr`)"


def test_invalid_ip_text() -> None:
    words = one_error_line(run_lab("tcp-client", "127.0.0.256", "hi", "6000"), "tcp-client")
    assert words.startswith("'127.0.0.256' is not an IP address")


def test_connection_refused() -> None:
    port = free_port()
    words = one_error_line(run_lab("tcp-client", "127.0.0.1", "hi", str(port)), "tcp-client")
    assert words == f"connection refused: nothing listens on 127.0.0.1:{port}"


def test_connect_timeout_when_the_backlog_is_full(sockets: list[socket.socket]) -> None:
    """A full accept queue drops new SYNs: the connect times out, on loopback only."""
    listener = socket.socket()
    sockets.append(listener)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    for _ in range(3):  # fill the queue (never accepted)
        filler = socket.socket()
        sockets.append(filler)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    result = run_lab("tcp-client", "127.0.0.1", "hi", str(port), "--timeout", "0.5")
    words = one_error_line(result, "tcp-client")
    assert words.startswith(f"no answer from 127.0.0.1:{port} within 0.5 s")


def test_bind_family_mismatch() -> None:
    words = one_error_line(
        run_lab("tcp-client", "::1", "hi", "6000", "--bind", "127.0.0.1"), "tcp-client"
    )
    assert words == "--bind 127.0.0.1 is IPv4 but ::1 is IPv6: use two addresses of the same kind"
