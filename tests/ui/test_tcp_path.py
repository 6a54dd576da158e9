"""The TCP states tab's path from the event stream: every transition, in the diagram's names."""

from __future__ import annotations

import os
import socket
import time

import pytest

from app.core.watch import EventStream, Source, WatchEvent
from app.ui.widgets.tcp_machine import PathHistory
from tests.conftest import listener


def event(
    lport: int, rport: int, old: str | None, new: str, source: Source = "tracepoint"
) -> WatchEvent:
    return WatchEvent(
        0.0, "tcp", "127.0.0.1", lport, "127.0.0.1", rport, old, new, None, None, source
    )


def test_the_client_path_from_a_lecture_run() -> None:
    """The lines `observatory watch --port 6000` printed for the lecture's tcp-client."""
    history = PathHistory()
    history.record_transitions(
        [
            event(0, 6000, "CLOSE", "SYN_SENT"),  # connect(): no port yet, skipped
            event(42694, 6000, "SYN_SENT", "ESTABLISHED"),
            event(6000, 42694, "LISTEN", "SYN_RECV"),
            event(6000, 42694, "SYN_RECV", "ESTABLISHED"),
            event(42694, 6000, "ESTABLISHED", "FIN_WAIT1"),
            event(6000, 42694, "ESTABLISHED", "CLOSE_WAIT"),
            event(6000, 42694, "CLOSE_WAIT", "LAST_ACK"),
            event(42694, 6000, "FIN_WAIT1", "FIN_WAIT2"),
            event(42694, 6000, "FIN_WAIT2", "CLOSE"),
            event(6000, 42694, "LAST_ACK", "CLOSE"),
            event(42694, 6000, "FIN_WAIT2", "TIME_WAIT", "poll"),
        ]
    )
    client = "tcp 127.0.0.1:42694 127.0.0.1:6000"
    server = "tcp 127.0.0.1:6000 127.0.0.1:42694"
    assert history.path(client, "TIME_WAIT") == [
        "CLOSED",
        "SYN_SENT",
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
    ]
    assert history.path(server, "CLOSED") == [
        "LISTEN",
        "SYN_RECV",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "LAST_ACK",
        "CLOSED",
    ]
    # The TIME_WAIT entry ends; later the same ports make a new connection.
    history.record_transitions(
        [
            event(42694, 6000, "TIME_WAIT", "CLOSE", "poll"),
            event(42694, 6000, "SYN_SENT", "ESTABLISHED"),
        ]
    )
    assert history.path(client, "ESTABLISHED") == ["CLOSED", "SYN_SENT", "ESTABLISHED"]


def test_udp_has_no_path() -> None:
    history = PathHistory()
    history.record_transitions(
        [WatchEvent(0.0, "udp", "127.0.0.1", 5000, None, None, None, "NONE", None, None, "poll")]
    )
    assert history.paths == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="every transition needs root (the tracepoint)")
def test_a_20_ms_connection_has_its_whole_path(sockets: list[socket.socket]) -> None:
    """Real kernel events: states that last microseconds are on the path."""
    srv = listener(sockets)
    port = srv.getsockname()[1]
    history = PathHistory()
    with EventStream(ports=[port], interval=0.1) as stream:
        stream.read(0)  # the baseline sample
        cli = socket.create_connection(("127.0.0.1", port))
        conn, _ = srv.accept()
        time.sleep(0.02)
        cli.close()
        conn.close()
        deadline = time.monotonic() + 3
        events: list[WatchEvent] = []
        while time.monotonic() < deadline:
            events += stream.read(0.2)
            if any(e.new_state == "TIME_WAIT" for e in events):
                break
    history.record_transitions(events)
    (key,) = [k for k in history.paths if k.endswith(f"127.0.0.1:{port}")]
    assert history.path(key, None) == [
        "CLOSED",
        "SYN_SENT",
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
    ]


def test_the_other_end_of_a_dual_stack_connection() -> None:
    from app.core.model import Socket
    from app.ui.widgets.tcp_machine import mirror_key

    server = Socket("tcp6", "::ffff:127.0.0.1", 6000, "::ffff:127.0.0.1", 41000, "ESTABLISHED")
    client = Socket("tcp", "127.0.0.1", 41000, "127.0.0.1", 6000, "ESTABLISHED")
    assert mirror_key(server) == client.key
    assert mirror_key(client) == "tcp 127.0.0.1:6000 127.0.0.1:41000"  # its mirror is plain too
    v6 = Socket("tcp6", "::1", 6000, "::1", 41000, "ESTABLISHED")
    assert mirror_key(v6) == "tcp6 ::1:41000 ::1:6000"
