"""The TCP state machine: data, diagram, explanations, and paths of real sockets."""

from __future__ import annotations

import socket

import pytest

from app.core.diff import diff
from app.core.model import TCP_STATES, Snapshot, Socket, SocketEvent
from app.core.sockets import ProcNetSource
from app.core.tcpstates import (
    STATES,
    TRANSITIONS,
    UnknownStateError,
    close_side,
    diagram_lines,
    explain,
    find_transition,
    normalize_state,
    path_from_events,
    render_diagram,
    state_label,
    transitions_from,
)
from tests.conftest import connect, listener, wait_for


def test_every_transition_joins_known_states() -> None:
    for t in TRANSITIONS:
        assert t.src in STATES and t.dst in STATES, t
        assert t.event
    # Every state can be reached and (but CLOSED at the start) left again.
    assert {t.dst for t in TRANSITIONS} == set(STATES)
    assert {t.src for t in TRANSITIONS} == set(STATES)


def test_the_rfc_793_arrows() -> None:
    three_way = [
        ("CLOSED", "LISTEN"),
        ("LISTEN", "SYN_RECV"),
        ("SYN_RECV", "ESTABLISHED"),
        ("CLOSED", "SYN_SENT"),
        ("SYN_SENT", "ESTABLISHED"),
    ]
    for src, dst in three_way:
        assert find_transition(src, dst) is not None, (src, dst)
    t = find_transition("LISTEN", "SYN_RECV")
    assert t is not None and t.event == "rcv SYN, snd SYN,ACK" and t.side == "passive-open"
    t = find_transition("ESTABLISHED", "FIN_WAIT1")
    assert t is not None and t.event == "close(), snd FIN" and t.side == "active-close"
    t = find_transition("ESTABLISHED", "CLOSE_WAIT")
    assert t is not None and t.side == "passive-close"
    t = find_transition("TIME_WAIT", "CLOSE")  # the model's spelling of CLOSED
    assert t is not None and "2MSL" in t.event
    assert find_transition("LISTEN", "TIME_WAIT") is None
    assert {t.dst for t in transitions_from("FIN_WAIT1")} == {"FIN_WAIT2", "CLOSING", "TIME_WAIT"}


def test_only_the_active_closer_reaches_time_wait() -> None:
    into_time_wait = [t for t in TRANSITIONS if t.dst == "TIME_WAIT"]
    assert into_time_wait and all(t.side == "active-close" for t in into_time_wait)
    passive = [t for t in TRANSITIONS if t.side == "passive-close"]
    assert all(t.dst != "TIME_WAIT" for t in passive)
    assert close_side("TIME_WAIT") == "active" and close_side("LAST_ACK") == "passive"
    assert close_side("ESTABLISHED") is None


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("CLOSE", "CLOSED"),
        ("NEW_SYN_RECV", "SYN_RECV"),
        ("SYN-RECEIVED", "SYN_RECV"),
        ("fin-wait-1", "FIN_WAIT1"),
        ("FIN_WAIT_2", "FIN_WAIT2"),
        ("estab", "ESTABLISHED"),
        (" time_wait ", "TIME_WAIT"),
    ],
)
def test_normalize_state(name: str, want: str) -> None:
    assert normalize_state(name) == want


def test_every_model_state_is_known_to_the_diagram() -> None:
    for name in TCP_STATES:
        assert normalize_state(name) in STATES


@pytest.mark.parametrize("name", ["NONE", "UNCONN", "", "FOO"])
def test_unknown_states_are_refused(name: str) -> None:
    with pytest.raises(UnknownStateError):
        normalize_state(name)


def test_explain_every_state_in_one_sentence() -> None:
    for name in STATES:
        text = explain(name)
        assert text.startswith(name + ":")
        assert text.endswith(".") and "\n" not in text
        assert text.count(". ") == 0  # one sentence
    assert "active closer" in explain("TIME_WAIT") and "first" in explain("TIME_WAIT")
    assert "TIME_WAIT" in explain("FIN_WAIT1")
    assert "without TIME_WAIT" in explain("LAST_ACK")
    assert explain("CLOSE") == explain("CLOSED")
    assert "UDP" in explain("NONE")
    with pytest.raises(UnknownStateError):
        explain("BOGUS")


def test_diagram_fits_and_shows_every_state() -> None:
    lines = diagram_lines()
    assert len(lines) <= 22
    assert max(len(line) for line in lines) <= 76
    text = "\n".join(lines)
    for name in STATES:
        assert name.lower() in text
    assert "active close" in text and "passive close" in text
    # Nothing is marked when no state is current.
    assert "[*" not in text
    assert not any(name in text for name in STATES)  # all names in lower case


def test_current_state_is_marked_by_shape_and_case() -> None:
    lines = diagram_lines("ESTABLISHED")
    diagram = "\n".join(lines[:22])
    assert diagram.count("[*ESTABLISHED*]") == 1
    assert "established" not in diagram
    # The only upper-case state name in the drawing is the current one.
    others = [s for s in STATES if s != "ESTABLISHED"]
    assert not any(s in diagram for s in others)
    assert lines[22].startswith("[*ESTABLISHED*] = current state")
    assert max(len(line) for line in lines) <= 76
    # CLOSED appears twice (start and end): both are marked.
    assert "\n".join(diagram_lines("CLOSE")).count("[*CLOSED*]") == 3  # 2 cells + legend


def test_path_listed_underneath_and_ascii_mode() -> None:
    path = ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"]
    text = render_diagram("TIME_WAIT", path, ascii=True)
    assert text.endswith("path: ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT\n")
    assert all(ord(ch) < 128 for ch in text)
    assert "[*TIME_WAIT*]" in text
    unicode = render_diagram(None, path)
    assert "path: ESTABLISHED → FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT" in unicode
    with pytest.raises(UnknownStateError):
        diagram_lines("NONE")


def test_state_label() -> None:
    assert state_label("FIN_WAIT1", True) == "[*FIN_WAIT1*]"
    assert state_label("FIN_WAIT1", False) == "fin_wait1"


# --- paths from events -----------------------------------------------------------


def sock(state: str, lport: int = 40000, rport: int | None = 6000) -> Socket:
    return Socket(
        proto="tcp",
        local_addr="127.0.0.1",
        local_port=lport,
        remote_addr=None if rport is None else "127.0.0.1",
        remote_port=rport,
        state=state,
    )


def test_path_from_synthetic_events() -> None:
    s = sock("ESTABLISHED")
    key = s.key
    other = sock("ESTABLISHED", lport=40001)
    events = [
        SocketEvent(3.0, "state-changed", key, sock("TIME_WAIT"), "FIN_WAIT2", "TIME_WAIT"),
        SocketEvent(1.0, "connection-opened", key, s, None, "ESTABLISHED"),
        SocketEvent(1.5, "connection-opened", other.key, other, None, "ESTABLISHED"),
        SocketEvent(2.0, "state-changed", key, sock("FIN_WAIT1"), "ESTABLISHED", "FIN_WAIT1"),
        SocketEvent(2.5, "state-changed", key, sock("FIN_WAIT2"), "FIN_WAIT1", "FIN_WAIT2"),
        SocketEvent(4.0, "connection-closed", key, sock("TIME_WAIT"), "TIME_WAIT", None),
    ]
    assert path_from_events(events, key) == [
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSED",
    ]
    assert path_from_events(events, key, closed_at_end=False)[-1] == "TIME_WAIT"
    assert path_from_events(events, "tcp nothing") == []


def test_path_starts_from_old_state_and_maps_close() -> None:
    key = sock("X").key
    events = [
        SocketEvent(1.0, "state-changed", key, sock("CLOSE"), "LAST_ACK", "CLOSE"),
    ]
    assert path_from_events(events, key) == ["LAST_ACK", "CLOSED"]


def test_path_of_a_listener_and_udp_is_ignored() -> None:
    lst = sock("LISTEN", lport=6000, rport=None)
    events = [
        SocketEvent(1.0, "listener-opened", lst.key, lst, None, "LISTEN"),
        SocketEvent(2.0, "listener-closed", lst.key, lst, "LISTEN", None),
    ]
    assert path_from_events(events, lst.key) == ["LISTEN", "CLOSED"]
    udp = Socket("udp", "127.0.0.1", 5000, None, None, "NONE")
    assert path_from_events([SocketEvent(1.0, "udp-opened", udp.key, udp)], udp.key) == []


def reachable(src: str, dst: str) -> bool:
    """``dst`` follows ``src`` within one connection's life (never through CLOSED)."""
    seen, todo = {src}, [src]
    while todo:
        for t in transitions_from(todo.pop()):
            if t.dst == dst:
                return True
            if t.dst not in seen and t.dst != "CLOSED":
                seen.add(t.dst)
                todo.append(t.dst)
    return False


def test_one_connection_never_goes_back() -> None:
    assert reachable("ESTABLISHED", "TIME_WAIT")
    assert reachable("FIN_WAIT1", "CLOSED")
    assert not reachable("TIME_WAIT", "ESTABLISHED")
    assert not reachable("CLOSE_WAIT", "TIME_WAIT")  # the passive closer skips it
    assert not reachable("LAST_ACK", "FIN_WAIT2")


def test_path_of_real_loopback_connections(sockets: list[socket.socket]) -> None:
    """The client closes first: it walks to TIME_WAIT, the server to CLOSE_WAIT and away."""
    source = ProcNetSource()
    srv = listener(sockets)
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    host, cport = cli.getsockname()[:2]
    sport = srv.getsockname()[1]
    client_key = f"tcp {host}:{cport} {host}:{sport}"
    server_key = f"tcp {host}:{sport} {host}:{cport}"
    snaps: list[Snapshot] = []

    def poll_until(key: str, state: str | None) -> bool:
        snap = source.poll()
        snaps.append(snap)
        found = snap.by_key.get(key)
        return (found is None) if state is None else (found is not None and found.state == state)

    wait_for(lambda: poll_until(client_key, "ESTABLISHED"))
    cli.close()  # the active closer
    wait_for(lambda: poll_until(server_key, "CLOSE_WAIT"))
    conn.close()  # the passive closer answers with its FIN
    wait_for(lambda: poll_until(client_key, "TIME_WAIT"))
    wait_for(lambda: poll_until(server_key, None))

    events: list[SocketEvent] = []
    previous: Snapshot | None = None
    for snap in snaps:
        events += diff(previous, snap)
        previous = snap
    client_path = path_from_events(events, client_key)
    server_path = path_from_events(events, server_key)
    assert client_path[0] == "ESTABLISHED" and client_path[-1] == "TIME_WAIT"
    assert set(client_path) <= {"ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"}
    assert server_path[0] == "ESTABLISHED" and server_path[-1] == "CLOSED"
    assert "CLOSE_WAIT" in server_path and "TIME_WAIT" not in server_path
    # Each step the polls saw follows the diagram's arrows (polls may skip states).
    for path in (client_path, server_path):
        for src, dst in zip(path, path[1:], strict=False):
            assert reachable(src, dst), (src, dst, path)
    text = render_diagram(client_path[-1], client_path)
    assert "[*TIME_WAIT*]" in text and "path: ESTABLISHED" in text
