"""Scans from a lab host, without a lab: the join with host-marked sockets, the targets a
lab host may scan, the argv, the CLI's words and the Scan tab's choices (no root, no nmap).

The lab is the lecture's (scenarios/session4-hosts.toml): host server with 10.0.2.15 and
10.0.2.100, host client with 10.0.2.16; server1 listens on 0.0.0.0:6000, server2 on
10.0.2.100:7000 only, both on server.
"""

from __future__ import annotations

import time

import pytest

from app.commands.scan import render_text
from app.core.interfaces import Address, Interface
from app.core.model import Snapshot, Socket
from app.core.netns import LabHost
from app.core.scan import (
    LabOrigin,
    PortResult,
    ScanRequest,
    ScanResult,
    TargetError,
    build_command,
    default_ports,
    parse_target,
    refuse_lab_address,
)
from app.core.scan.join import explain, join_listeners
from app.core.scan.nmap_xml import _ParsedHost
from app.ui.widgets.scan.formatting import (
    describe_port,
    history_row,
    lab_hosts_of,
    result_rows,
    target_options,
)

LAB = (LabHost("client", ("10.0.2.16/24",)), LabHost("server", ("10.0.2.15/24", "10.0.2.100/24")))
FROM_CLIENT = LabOrigin("client", "obs4242-client", LAB)


def listening(addr: str, port: int, host: str | None, pid: int) -> Socket:
    return Socket("tcp", addr, port, None, None, "LISTEN", pid=pid, process="tcp-server", host=host)


SERVER1 = listening("0.0.0.0", 6000, "server", 101)
SERVER2 = listening("10.0.2.100", 7000, "server", 102)
# This machine and the client host each have their own 7000 on every address: neither may
# ever explain a port of host server.
MINE = listening("0.0.0.0", 7000, None, 201)
CLIENTS = listening("0.0.0.0", 7000, "client", 301)
SNAPSHOT = Snapshot(taken_at=0.0, sockets=(SERVER1, SERVER2, MINE, CLIENTS))


def port(number: int, state: str, address: str = "10.0.2.15") -> PortResult:
    reason = "syn-ack" if state == "open" else "conn-refused"
    return PortResult(number, "tcp", state, "unknown", reason, address=address)


def scanned(address: str, *ports: PortResult) -> _ParsedHost:
    return _ParsedHost(address, "up", False, list(ports), [])


def join_from_client(address: str, *ports: PortResult) -> dict[int, PortResult]:
    hosts, joined = join_listeners(
        [scanned(address, *ports)], "connect", SNAPSHOT, local=[], origin=FROM_CLIENT
    )
    assert [h.lab_host for h in hosts] == [LAB_OWNER[address]]
    assert not hosts[0].local  # not this machine's: a lab host's
    return {p.port: p for p in joined}


LAB_OWNER = {"10.0.2.15": "server", "10.0.2.100": "server", "127.0.0.1": "client"}


# -- the join --------------------------------------------------------------------------
def test_experiment_9_closed_on_the_other_address_of_server() -> None:
    ports = join_from_client("10.0.2.15", port(6000, "open"), port(7000, "closed"))
    closed = ports[7000]
    assert closed.listener is not None and closed.listener.pid == 102  # server2, not MINE
    assert closed.listener.host == "server" and closed.listener.address == "10.0.2.100"
    why = closed.explanation or ""
    assert why.startswith(
        "on host server, tcp-server (pid 102) listens on 10.0.2.100:7000 only, not on 10.0.2.15"
    ), why
    assert "experiment 9: a server bound to one address" in why
    assert "every address of server" in why
    opened = ports[6000]
    assert opened.listener is not None and opened.listener.pid == 101
    assert (opened.explanation or "").startswith(
        "host server: tcp-server (pid 101) listens on 0.0.0.0:6000 (every address of server)"
    ), opened.explanation


def test_open_on_the_bound_address() -> None:
    ports = join_from_client("10.0.2.100", port(7000, "open", "10.0.2.100"))
    why = ports[7000].explanation or ""
    assert why.startswith(
        "host server: tcp-server (pid 102) listens on 10.0.2.100:7000 (this address only)"
    ), why
    assert ports[7000].listener is not None and ports[7000].listener.label == (
        "server: 102/tcp-server on 10.0.2.100"
    )


def test_loopback_is_the_scanning_hosts_own() -> None:
    ports = join_from_client(
        "127.0.0.1", port(7000, "open", "127.0.0.1"), port(6000, "closed", "127.0.0.1")
    )
    assert ports[7000].listener is not None and ports[7000].listener.pid == 301  # client's
    assert "host client: tcp-server (pid 301)" in (ports[7000].explanation or "")
    # server1's 6000 is server's, not client's: nothing of client listens there.
    assert ports[6000].listener is None
    assert ports[6000].explanation == (
        "nothing listens on 6000/tcp on host client: client's kernel answered nmap's SYN "
        "with a reset (RST)"
    )


def test_no_socket_of_another_host_explains_a_port() -> None:
    # From this machine, 127.0.0.1:6000 is this machine's: server1 (on host server) is not.
    hosts, ports = join_listeners(
        [scanned("127.0.0.1", port(6000, "closed", "127.0.0.1"))], "connect", SNAPSHOT, local=[]
    )
    assert hosts[0].local and hosts[0].lab_host is None
    assert ports[0].listener is None and "nothing listens on 6000/tcp:" in (
        ports[0].explanation or ""
    )
    # explain() itself leaves out the sockets of any other host than the one it is told.
    info, why = explain(port(7000, "closed"), "connect", [MINE, CLIENTS, SERVER2], "server")
    assert info is not None and info.pid == 102 and "on host server" in (why or "")
    info, why = explain(port(7000, "closed"), "connect", [MINE, CLIENTS], "server")
    assert info is None and why == (
        "nothing listens on 7000/tcp on host server: server's kernel answered nmap's SYN "
        "with a reset (RST)"
    )


def test_an_address_outside_the_lab_is_not_joined() -> None:
    hosts, ports = join_listeners(
        [scanned("10.0.2.99", port(7000, "closed", "10.0.2.99"))],
        "connect",
        SNAPSHOT,
        local=[],
        origin=FROM_CLIENT,
    )
    assert hosts[0].lab_host is None and not hosts[0].joined
    assert ports[0].listener is None and ports[0].explanation is None


def test_a_folded_port_a_host_listens_on_gets_its_row() -> None:
    from app.core.scan import NotShown

    host = _ParsedHost(
        "10.0.2.15", "up", False, [], [NotShown("closed", 3, "tcp", "conn-refused", "6999-7001")]
    )
    hosts, ports = join_listeners([host], "connect", SNAPSHOT, local=[], origin=FROM_CLIENT)
    assert [p.port for p in ports] == [7000]
    assert "10.0.2.100:7000 only" in (ports[0].explanation or "")
    assert hosts[0].not_shown[0].count == 2


# -- what a lab host may scan ------------------------------------------------------------
@pytest.mark.parametrize("target", ["10.0.2.15", "10.0.2.100", "10.0.2.16", "127.0.0.1"])
def test_the_labs_addresses_may_be_scanned(target: str) -> None:
    request = ScanRequest.create(target, "6000", origin=FROM_CLIENT)
    assert request.from_host == "client" and request.target.text == target


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("8.8.8.8", "8.8.8.8 is not one of them"),
        ("10.0.2.99", "10.0.2.99 is not one of them"),
        ("127.0.0.2", "127.0.0.2 is not one of them"),
        ("10.0.2.0/24", "is a network"),
        ("localhost", "is a name"),
    ],
)
def test_other_targets_are_refused_in_words(target: str, words: str) -> None:
    with pytest.raises(TargetError) as caught:
        ScanRequest.create(target, "6000", origin=FROM_CLIENT)
    text = str(caught.value)
    assert words in text and "\n" not in text
    assert text.startswith(
        "from lab host client, scan an address of its lab: 10.0.2.15 or 10.0.2.100 (server), "
        "10.0.2.16 (client), 127.0.0.1 (client's own loopback); "
    ), text


def test_from_this_machine_a_labs_address_is_refused() -> None:
    with pytest.raises(TargetError) as caught:
        ScanRequest.create("10.0.2.15", "6000", labs=[FROM_CLIENT], local=["192.168.1.2"])
    assert str(caught.value) == (
        "10.0.2.15 is lab host server's address, and this machine has no route into the lab "
        "network: scan it from a lab host instead (--from client, or the Scan tab's From)"
    )
    # This machine's own 10.0.2.15 (VirtualBox's NAT gives it) is this machine's to scan.
    refuse_lab_address(parse_target("10.0.2.15"), [FROM_CLIENT], local=["10.0.2.15"])
    refuse_lab_address(parse_target("127.0.0.1"), [FROM_CLIENT], local=[])


def test_the_argv_stays_nmaps_and_the_prefix_is_the_namespace() -> None:
    request = ScanRequest.create("10.0.2.15", "6000,7000", origin=FROM_CLIENT)
    argv = build_command(request)
    assert argv[0] == "nmap" and argv[-2:] == ("--", "10.0.2.15")
    assert FROM_CLIENT.exec_prefix == ("ip", "netns", "exec", "obs4242-client")
    assert FROM_CLIENT.namespace_of("server") == "obs4242-server"


def test_default_ports_are_the_lab_hosts() -> None:
    assert default_ports("connect", SNAPSHOT) == "6000,7000,16000,45321"  # MINE is 7000
    only_mine = Snapshot(taken_at=0.0, sockets=(SERVER1,))
    assert default_ports("connect", only_mine) == "6000,16000,45321"  # the lecture's 6000
    lab = Snapshot(taken_at=0.0, sockets=(SERVER2,))
    assert default_ports("connect", lab) == "6000,16000,45321"  # not this machine's
    assert default_ports("connect", lab, FROM_CLIENT) == "6000,7000,16000,45321"


# -- what a user reads -------------------------------------------------------------------
def lab_result() -> ScanResult:
    request = ScanRequest.create("10.0.2.15", "6000,7000", origin=FROM_CLIENT)
    hosts, ports = join_listeners(
        [scanned("10.0.2.15", port(6000, "open"), port(7000, "closed"))],
        "connect",
        SNAPSHOT,
        local=[],
        origin=FROM_CLIENT,
    )
    return ScanResult(
        target="10.0.2.15",
        type="connect",
        ports=ports,
        started_at=time.time(),
        duration=0.05,
        command=build_command(request),
        hosts=hosts,
        requested_ports="6000,7000",
        from_host="client",
        exec_prefix=FROM_CLIENT.exec_prefix,
    )


def test_the_text_and_json_say_where_from() -> None:
    result = lab_result()
    lines = render_text(result).splitlines()
    assert lines[0].startswith("Command: ip netns exec obs4242-client nmap -oX - ")
    assert lines[1] == "From: lab host client (nmap ran inside its network namespace)"
    assert (
        "Nmap scan report for 10.0.2.15 (lab host server: listeners from its socket table)" in lines
    )
    row = next(line for line in lines if line.startswith("7000/tcp"))
    assert row.endswith("server: 102/tcp-server on 10.0.2.100")
    data = result.to_json()
    assert data["from"] == "client" and data["command"][0] == "nmap"  # type: ignore[index]
    assert data["hosts"] == [  # the keys of before, and lab_host
        {
            "address": "10.0.2.15",
            "state": "up",
            "local": False,
            "timed_out": False,
            "not_shown": [],
            "lab_host": "server",
        }
    ]
    ports = data["ports"]
    assert isinstance(ports, list)
    assert ports[1]["listener"] == {
        "pid": 102,
        "process": "tcp-server",
        "user": None,
        "address": "10.0.2.100",
        "host": "server",
    }
    assert result.scanned == "10.0.2.15 from client"


def test_the_scan_tab_shows_the_host() -> None:
    result = lab_result()
    rows = result_rows(result)
    assert [str(c) for c in rows[1]] == [
        "7000/tcp",
        "closed",
        "unknown",
        "server: 102/tcp-server on 10.0.2.100",
    ]
    story = str(describe_port(result.ports[1], True))
    assert "LOCAL: on host server, tcp-server (pid 102) listens on 10.0.2.100:7000" in story
    assert "experiment 9" in story
    assert str(history_row(result)[2]) == "10.0.2.15 from client"


def iface(name: str, *addresses: str) -> Interface:
    return Interface(name, True, 1500, None, tuple(Address(4, a, 24) for a in addresses))


INTERFACES = [
    iface("lo", "127.0.0.1"),
    iface("eth0", "192.168.1.2"),
    iface("client/lo", "127.0.0.1"),
    iface("client/eth0", "10.0.2.16"),
    iface("server/eth0", "10.0.2.15", "10.0.2.100"),
]


def test_the_from_choice_and_its_targets() -> None:
    assert lab_hosts_of([SERVER1, MINE], []) == ("server",)
    assert lab_hosts_of([MINE], INTERFACES) == ("client", "server")
    assert lab_hosts_of([MINE], INTERFACES[:2]) == ()  # no lab: no From
    # From this machine: its own addresses only (a lab's is behind no route of it).
    assert [v for _, v in target_options(INTERFACES)] == ["127.0.0.1", "192.168.1.2", "::1"]
    # From client: its loopback, the other hosts' addresses, then its own.
    assert target_options(INTERFACES, "client") == [
        ("127.0.0.1 (client's own loopback)", "127.0.0.1"),
        ("10.0.2.15 (server)", "10.0.2.15"),
        ("10.0.2.100 (server)", "10.0.2.100"),
        ("10.0.2.16 (client)", "10.0.2.16"),
    ]
