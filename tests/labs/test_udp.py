"""UDP: datagrams without connections, the lecture's contrast."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from tests.conftest import free_port
from tests.labs.procs import Labs, hex_port, proc_net_rows

pytestmark = pytest.mark.timeout(30)

UDP_UNCONN = "07"  # the kernel numbers an unconnected UDP socket TCP_CLOSE


def test_udp_echo_round_trip(lab: Labs) -> None:
    port = free_port(socket.SOCK_DGRAM)
    server = lab.start("udp-server", str(port))
    assert server.next_line() == (f"Receiving on 127.0.0.1:{port} (UDP: no listen, no connections)")
    client = lab.start("udp-client", "127.0.0.1", "hello", str(port), "--count", "2")
    sent = client.next_line()
    assert sent is not None
    match = re.fullmatch(rf"Sent to 127\.0\.0\.1:{port} from 0\.0\.0\.0:(\d+): hello", sent)
    assert match, sent
    source = int(match.group(1))
    assert client.next_line() == f"Reply from 127.0.0.1:{port}: hello"
    assert client.next_line() == sent  # same socket, same source port
    assert client.next_line() == f"Reply from 127.0.0.1:{port}: hello"
    assert client.next_line() is None
    assert client.wait() == 0
    assert server.next_line() == f"From 127.0.0.1:{source}: hello"
    assert server.next_line() == f"From 127.0.0.1:{source}: hello"


def test_no_listen_no_established(lab: Labs) -> None:
    """While both hold their sockets: UDP rows only, unconnected, and no TCP row at all."""
    port = free_port(socket.SOCK_DGRAM)
    lab.server("udp-server", str(port))
    client = lab.start("udp-client", "127.0.0.1", "hi", str(port), "--hold", "5")
    sent = client.expect("Sent to")
    source = int(sent.rsplit(":", 2)[1])
    client.expect("Holding the socket for 5 s")
    udp = {row[1]: row for row in proc_net_rows("udp")}
    server_row = udp[f"0100007F:{hex_port(port)}"]
    client_row = udp[f"00000000:{hex_port(source)}"]
    for row in (server_row, client_row):
        assert row[3] == UDP_UNCONN
        assert row[2] == "00000000:0000"  # no peer: sendto() without connect()
    tcp_ports = {row[1].split(":")[1] for row in proc_net_rows("tcp")}
    assert hex_port(port) not in tcp_ports and hex_port(source) not in tcp_ports


def test_no_reply_is_said_in_words(lab: Labs) -> None:
    port = free_port(socket.SOCK_DGRAM)
    client = lab.start("udp-client", "127.0.0.1", "anyone?", str(port), "--timeout", "0.3")
    client.expect("Sent to")
    assert client.next_line() == (
        "No reply within 0.3 s (UDP does not tell whether anyone received it)"
    )
    assert client.wait() == 0


def test_udp_server_stops_quietly(lab: Labs) -> None:
    server = lab.server("udp-server", str(free_port(socket.SOCK_DGRAM)))
    server.signal(signal.SIGTERM)
    assert server.wait() == 128 + signal.SIGTERM
    assert server.expect("Stopped by") == "Stopped by SIGTERM"
    assert server.stderr_text() == ""


def test_udp_over_ipv6_loopback(lab: Labs) -> None:
    try:
        port = free_port(socket.SOCK_DGRAM, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = lab.start("udp-server", str(port), "--bind", "::1")
    server.expect("Receiving on [::1]")
    client = lab.start("udp-client", "::1", "hi", str(port))
    assert client.expect("Reply") == f"Reply from [::1]:{port}: hi"
    assert server.expect("From").startswith("From [::1]:")
