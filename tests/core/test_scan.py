"""app.core.scan and app.core.targets: validation, and real nmap scans of loopback.

Every scan here targets 127.0.0.0/8 or ::1 only (the workplace allows no
other traffic); ``assert_loopback`` checks each target before it is scanned.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from app.core.scan import (
    LECTURE_PORTS,
    NMAP_MISSING,
    NmapNotFound,
    PortResult,
    PortsError,
    Scan,
    ScanError,
    ScanHistory,
    ScanProgress,
    ScanRequest,
    ScanResult,
    ScanTypeError,
    ScanTypeUnavailable,
    TargetError,
    available_types,
    build_command,
    check_type,
    compare,
    parse_nmap_xml,
    parse_ports,
    parse_target,
    run_scan,
)
from app.core.sockets import ProcNetSource
from app.core.targets import expand_ports
from tests.conftest import listener, wait_for
from tests.nmaputil import (
    assert_loopback,
    closed_port,
    nmap_processes_of,
    nmap_states,
    require_nmap,
)


def scan(target: str, ports: str, scan_type: str = "connect", **kw: object) -> ScanResult:
    assert_loopback(target)
    return run_scan(ScanRequest.create(target, ports, scan_type), **kw)  # type: ignore[arg-type]


# -- targets ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical", "kind", "size"),
    [
        ("127.0.0.1", "127.0.0.1", "address", 1),
        (" 127.0.0.2 ", "127.0.0.2", "address", 1),
        ("::1", "::1", "address", 1),
        ("0:0:0:0:0:0:0:1", "::1", "address", 1),
        ("fe80::1%lo", "fe80::1%lo", "address", 1),
        ("127.0.0.0/24", "127.0.0.0/24", "network", 256),
        ("127.0.0.5/30", "127.0.0.4/30", "network", 4),
        ("127.0.0.9/32", "127.0.0.9", "address", 1),
        ("fd00::/120", "fd00::/120", "network", 256),
        ("localhost", "localhost", "hostname", 1),
        ("lab-01.example.org", "lab-01.example.org", "hostname", 1),
    ],
)
def test_valid_targets_are_canonical(text: str, canonical: str, kind: str, size: int) -> None:
    target = parse_target(text)
    assert (target.text, target.kind, target.size) == (canonical, kind, size)


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1 -oN /tmp/x",
        "-iL /etc/passwd",
        "-iL",
        "--script=x",
        "$(touch x)",
        "`id`",
        ";",
        "127.0.0.1;id",
        "127.0.0.1|id",
        "127.0.0.1&",
        "a>b",
        "127.0.0.1,127.0.0.2",
        "127.0.0.1-5",
        "127.0.0.*",
        "",
        "   ",
        "host_name",
        "-localhost",
        "a..b",
        "x" * 64,
        "999.1.1.1",
        "127.1",
        "10.0.0.0/23",
        "fd00::/64",
        "127.0.0.0/33",
        "::1%$(id)",
        "fe80::1%eth0 -oN",
        "1.2.3.4\n-oN",
        "'127.0.0.1'",
    ],
)
def test_bad_targets_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message and "\n" not in message and "Traceback" not in message


def test_network_cap_is_said_in_words() -> None:
    with pytest.raises(TargetError, match=r"65536 addresses; scan at most 256 at once \(a /24"):
        parse_target("127.0.0.0/16")
    with pytest.raises(TargetError, match=r"/120"):
        parse_target("::/112")


# -- ports --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("22", "22"),
        ("80, 22,6000-6010,81", "22,80-81,6000-6010"),
        ("6005-6010,6000-6006", "6000-6010"),
        ("1-65535", "1-65535"),
        ("65535,1", "1,65535"),
    ],
)
def test_ports_are_canonical(text: str, canonical: str) -> None:
    assert parse_ports(text) == canonical


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1-70000", "70000 is outside"),
        ("0", "0 is outside"),
        ("http", "not 'http'"),
        ("6010-6000", "from the smaller port to the larger"),
        ("22,,80", "an empty item"),
        ("-80", "not '-80'"),
        ("T:22", "not 'T:22'"),
        ("22 80", "not '22 80'"),
        ("22;id", "not '22;id'"),
        ("$(id)", "not '$(id)'"),
        ("", "give ports"),
    ],
)
def test_bad_ports_are_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(PortsError) as info:
        parse_ports(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_expand_ports() -> None:
    assert expand_ports("22,80-82") == [22, 80, 81, 82]


# -- types and commands -------------------------------------------------------
def test_types_need_root_for_raw_packets() -> None:
    user = {t.name: t for t in available_types(euid=1000)}
    assert [t.name for t in available_types(euid=1000)] == ["connect", "syn", "udp", "version"]
    assert user["connect"].enabled and user["version"].enabled
    assert not user["syn"].enabled
    assert user["syn"].reason == "SYN scans need root: nmap sends raw packets"
    assert not user["udp"].enabled and "need root" in (user["udp"].reason or "")
    assert all(t.enabled and t.reason is None for t in available_types(euid=0))
    with pytest.raises(ScanTypeUnavailable, match="SYN scans need root"):
        check_type("syn", euid=1000)
    with pytest.raises(ScanTypeError, match="not 'ping'"):
        check_type("ping")
    with pytest.raises(ScanTypeError):
        ScanRequest.create("127.0.0.1", "22", "ping")


def test_command_is_fixed_options_and_canonical_fields() -> None:
    request = ScanRequest.create("127.0.0.1", "80,22", "connect")
    argv = build_command(request, timeout=30)
    assert argv == (
        "nmap",
        "-oX",
        "-",
        "--stats-every",
        "1s",
        "-sT",
        "-Pn",
        "-n",
        "--max-retries",
        "1",
        "--host-timeout",
        "30s",
        "-p",
        "22,80",
        "--",
        "127.0.0.1",
    )
    assert build_command(ScanRequest.create("::1", "22", "syn"))[5] == "-sS"
    assert "-6" in build_command(ScanRequest.create("::1", "22"))
    version = build_command(ScanRequest.create("127.0.0.1", "22", "version"))
    assert version[5:7] == ("-sT", "-sV")
    assert build_command(ScanRequest.create("127.0.0.1", "22", "udp"))[5] == "-sU"


def test_default_ports_are_listeners_and_the_lectures(sockets: list[socket.socket]) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    request = ScanRequest.create("127.0.0.1", None)
    numbers = expand_ports(request.ports)
    assert port in numbers
    assert set(LECTURE_PORTS) <= set(numbers)
    # A UDP scan defaults to bound UDP ports, not TCP listeners.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(udp)
    udp.bind(("127.0.0.1", 0))
    udp_ports = expand_ports(ScanRequest.create("127.0.0.1", " ", "udp").ports)
    assert udp.getsockname()[1] in udp_ports and set(LECTURE_PORTS) <= set(udp_ports)


OLD_NMAP_XML = """<?xml version="1.0"?>
<nmaprun scanner="nmap" args="nmap" version="7.80">
<host><status state="up" reason="user-set"/><address addr="127.0.0.1" addrtype="ipv4"/>
<ports><extraports state="closed" count="3"><extrareasons reason="conn-refused" count="3"/>
</extraports>
<port protocol="tcp" portid="6000"><state state="open" reason="syn-ack"/>
<service name="X11" method="table" conf="3"/></port>
<port protocol="tcp" portid="6001"><state state="closed" reason="conn-refused"/></port>
</ports></host></nmaprun>"""


def test_older_nmap_without_folded_port_lists() -> None:
    (host,) = parse_nmap_xml(OLD_NMAP_XML, "6000-6004")
    assert [(p.port, p.state, p.service) for p in host.ports] == [
        (6000, "open", "X11"),
        (6001, "closed", "unknown"),
    ]
    (group,) = host.not_shown
    assert (group.state, group.count, group.reason, group.ports) == (
        "closed",
        3,
        "conn-refused",
        "6002-6004",
    )


# -- history and compare (data only) ------------------------------------------
def _result(states: dict[int, str], started: float) -> ScanResult:
    ports = tuple(
        PortResult(p, "tcp", s, "unknown", None, address="127.0.0.1") for p, s in states.items()
    )
    return ScanResult("127.0.0.1", "connect", ports, started, 0.1, ("nmap",))


def test_history_keeps_a_limited_list_per_target() -> None:
    history = ScanHistory(limit=2)
    first, second, third = (_result({22: "open"}, t) for t in (1.0, 2.0, 3.0))
    for r in (first, second, third):
        history.add(r)
    assert history.results("127.0.0.1") == [second, third]
    assert history.latest("127.0.0.1") is third and history.previous("127.0.0.1") is second
    assert history.targets() == ["127.0.0.1"] and len(history) == 2
    assert history.latest("127.0.0.2") is None and history.compare_latest("127.0.0.2") is None
    history.clear()
    assert len(history) == 0


def test_compare_rows_like_zenmap() -> None:
    a = _result({22: "open", 80: "closed"}, 1.0)
    b = _result({22: "open", 80: "open", 443: "closed"}, 2.0)
    rows = [(r.port, r.proto, r.state_a, r.state_b, r.changed) for r in compare(a, b)]
    assert rows == [
        (22, "tcp", "open", "open", False),
        (80, "tcp", "closed", "open", True),
        (443, "tcp", None, "closed", True),
    ]


# -- real nmap on loopback ----------------------------------------------------
def test_states_agree_with_nmap_run_directly(sockets: list[socket.socket]) -> None:
    require_nmap()
    server = listener(sockets)
    open_port = server.getsockname()[1]
    shut = closed_port()
    ports = f"{open_port},{shut}"
    result = scan("127.0.0.1", ports)
    assert result.ok, result.error
    direct = nmap_states(ports)
    assert {p.port: p.state for p in result.ports} == direct
    assert direct == {open_port: "open", shut: "closed"}
    opened = result.port(open_port)
    assert opened is not None and opened.listener is not None
    assert opened.listener.pid == os.getpid()
    assert opened.listener.address == "127.0.0.1"
    assert opened.reason == "syn-ack"
    assert "completed a handshake" in (opened.explanation or "")
    refused = result.port(shut)
    assert refused is not None and refused.listener is None
    assert refused.reason == "conn-refused" and "nothing listens" in (refused.explanation or "")
    assert result.hosts[0].local and result.command[0] == "nmap"
    assert result.duration > 0 and result.started_at <= time.time()


def test_lecture_ports_have_nmaps_names() -> None:
    require_nmap()
    result = scan("127.0.0.1", "6000,16000,45321")
    assert result.ok, result.error
    names = {p.port: p.service for p in result.ports}
    assert names == {6000: "X11", 16000: "fmsas", 45321: "unknown"}


def test_bound_to_one_address_is_closed_on_another(sockets: list[socket.socket]) -> None:
    require_nmap()
    only_one = listener(sockets, "127.0.0.1")
    everywhere = listener(sockets, "0.0.0.0")
    port, any_port = only_one.getsockname()[1], everywhere.getsockname()[1]
    result = scan("127.0.0.2", f"{port},{any_port}")
    assert result.ok, result.error
    assert nmap_states(f"{port},{any_port}", "127.0.0.2") == {port: "closed", any_port: "open"}
    refused = result.port(port)
    assert refused is not None and refused.state == "closed"
    assert refused.listener is not None and refused.listener.pid == os.getpid()
    assert refused.listener.address == "127.0.0.1"
    why = refused.explanation or ""
    assert f"127.0.0.1:{port} only" in why and "you scanned 127.0.0.2" in why
    assert "0.0.0.0" in why
    accepted = result.port(any_port)
    assert accepted is not None and accepted.state == "open"
    assert accepted.listener is not None and accepted.listener.address == "0.0.0.0"
    assert accepted.listener.pid == os.getpid()


def test_a_folded_port_with_a_listener_gets_its_own_line(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = listener(sockets, "127.0.0.1").getsockname()[1]
    low = max(1, min(port - 20, 65535 - 40))
    ports = f"{low}-{low + 40}"
    result = scan("127.0.0.2", ports)
    assert result.ok, result.error
    lifted = result.port(port)
    assert lifted is not None and lifted.state == "closed"
    assert lifted.listener is not None and "127.0.0.1" in (lifted.explanation or "")
    (host,) = result.hosts
    folded = sum(g.count for g in host.not_shown)
    assert folded + len(result.ports) == 41
    assert all(g.ports and str(port) not in g.ports.split(",") for g in host.not_shown)


def test_ipv6_loopback(sockets: list[socket.socket]) -> None:
    require_nmap()
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = listener(sockets, "::1")
    except OSError:
        pytest.skip("::1 is not configured")
    port = server.getsockname()[1]
    result = scan("::1", str(port))
    assert result.ok, result.error
    found = result.port(port)
    assert found is not None and found.state == "open" and found.address == "::1"
    assert found.listener is not None and found.listener.pid == os.getpid()
    assert found.listener.address == "::1"


def test_full_accept_queue_reads_as_filtered(sockets: list[socket.socket]) -> None:
    require_nmap()
    server = listener(sockets, "127.0.0.1", backlog=0)
    port = server.getsockname()[1]
    for _ in range(3):  # one is queued; the others keep sending SYNs the kernel drops
        c = socket.socket()
        sockets.append(c)
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
    source = ProcNetSource(protos=("tcp",))

    def queued() -> bool:
        return any(
            s.local_port == port and s.state == "LISTEN" and s.recv_q > 0
            for s in source.poll().sockets
        )

    wait_for(queued)
    result = scan("127.0.0.1", str(port))
    assert result.ok, result.error
    found = result.port(port)
    assert found is not None and found.state == "filtered"
    assert found.listener is not None and found.listener.pid == os.getpid()
    assert "accept queue" in (found.explanation or "") and "full" in (found.explanation or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="SYN and UDP scans need root")
def test_syn_and_udp_as_root(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = listener(sockets).getsockname()[1]
    shut = closed_port()
    syn = scan("127.0.0.1", f"{port},{shut}", "syn")
    assert syn.ok, syn.error
    assert {p.port: p.state for p in syn.ports} == nmap_states(f"{port},{shut}", flag="-sS")
    opened = syn.port(port)
    assert opened is not None and opened.state == "open"
    assert "never completed" in (opened.explanation or "")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(udp)
    udp.bind(("127.0.0.1", 0))
    uport = udp.getsockname()[1]
    ushut = closed_port(kind=socket.SOCK_DGRAM)
    result = scan("127.0.0.1", f"{uport},{ushut}", "udp")
    assert result.ok, result.error
    states = {p.port: p.state for p in result.ports}
    assert states == {uport: "open|filtered", ushut: "closed"}
    bound = result.port(uport, "udp")
    assert bound is not None and bound.listener is not None
    assert bound.listener.pid == os.getpid() and "UDP has no handshake" in (bound.explanation or "")


def test_compare_before_and_after_the_server_goes(sockets: list[socket.socket]) -> None:
    require_nmap()
    server = listener(sockets)
    port = server.getsockname()[1]
    history = ScanHistory()
    history.add(scan("127.0.0.1", str(port)))
    server.close()
    history.add(scan("127.0.0.1", str(port)))
    rows = history.compare_latest("127.0.0.1")
    assert rows is not None
    assert [(r.port, r.state_a, r.state_b, r.changed) for r in rows] == [
        (port, "open", "closed", True)
    ]


# -- progress, cancel, timeout, no nmap left behind ---------------------------
def _silent_server(sockets: list[socket.socket]) -> int:
    """A listener that never accepts nor speaks: nmap -sV waits on it for seconds."""
    port: int = listener(sockets).getsockname()[1]
    return port


def test_progress_rises_to_100(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = listener(sockets).getsockname()[1]
    seen: list[ScanProgress] = []
    result = scan("127.0.0.1", f"1-1000,{port}", on_progress=seen.append)
    assert result.ok, result.error
    assert seen and seen[-1].percent == 100.0 and seen[-1].pid is None
    assert any(p.pid is not None for p in seen[:-1])
    percents = [p.percent for p in seen]
    assert percents == sorted(percents)
    assert all(p.elapsed >= 0 for p in seen)


def test_cancel_from_another_thread_leaves_no_nmap(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = _silent_server(sockets)
    reports: list[ScanProgress] = []
    scan_ = Scan(
        ScanRequest.create("127.0.0.1", str(port), "version"),
        timeout=30,
        on_progress=reports.append,
    )
    scan_.start()
    wait_for(lambda: scan_.pid is not None and nmap_processes_of(scan_.pid))
    pid = scan_.pid
    time.sleep(0.3)
    assert not scan_.done  # -sV on a silent server takes seconds: still running
    asked = time.monotonic()
    threading.Thread(target=scan_.cancel).start()
    result = scan_.wait(timeout=10)
    assert result is not None
    assert time.monotonic() - asked < 3
    assert result.status == "cancelled" and not result.ok
    assert result.error is not None and result.error.startswith("the scan was cancelled")
    assert result.ports == ()
    assert nmap_processes_of(pid) == []
    assert reports and reports[0].pid == pid


def test_timeout_kills_nmap(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = _silent_server(sockets)
    scan_ = Scan(ScanRequest.create("127.0.0.1", str(port), "version"), timeout=1.0)
    started = time.monotonic()
    result = scan_.run()
    assert result.status == "timeout", result
    assert "longer than 1 s" in (result.error or "") or "host timeout" in (result.error or "")
    assert time.monotonic() - started < 5
    assert nmap_processes_of(scan_.pid) == []


def test_a_failing_progress_callback_still_kills_nmap(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = _silent_server(sockets)
    calls: list[int] = []

    def explode(progress: ScanProgress) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the UI went away")

    scan_ = Scan(
        ScanRequest.create("127.0.0.1", str(port), "version"), timeout=30, on_progress=explode
    )
    with pytest.raises(RuntimeError, match="the UI went away"):
        scan_.run()
    assert scan_.pid is not None and nmap_processes_of(scan_.pid) == []


def test_cancelled_before_start_runs_nothing() -> None:
    require_nmap()
    event = threading.Event()
    event.set()
    scan_ = Scan(ScanRequest.create("127.0.0.1", "22"), cancel_event=event)
    result = scan_.run()
    assert result.status == "cancelled" and scan_.pid is None
    with pytest.raises(RuntimeError):
        scan_.run()


def test_without_nmap_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    request = ScanRequest.create("127.0.0.1", "22")
    with pytest.raises(NmapNotFound) as info:
        Scan(request).run()
    assert str(info.value) == NMAP_MISSING
    assert "sudo apt install nmap" in str(info.value)
    with pytest.raises(ScanError):
        Scan(request).start()


def test_injection_never_reaches_nmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for target in (
        f"127.0.0.1 -oN {tmp_path}/x",
        "-iL /etc/passwd",
        f"$(touch {tmp_path}/y)",
        "127.0.0.1;touch z",
        f"-oN{tmp_path}/w",
    ):
        with pytest.raises(TargetError):
            ScanRequest.create(target, "22")
    for ports in ("22 -oN x", "1-70000", "http", "22;touch z"):
        with pytest.raises(PortsError):
            ScanRequest.create("127.0.0.1", ports)
    assert list(tmp_path.iterdir()) == []


def test_progress_lines_of_nmaps_xml_make_one_rising_percentage() -> None:
    from app.core.scan.nmap_xml import _ProgressTracker

    tracker = _ProgressTracker("version")
    lines = [  # as nmap 7.93 writes them with --stats-every
        '<taskprogress task="Connect Scan" time="1" percent="40.00" remaining="3" etc="4"/>',
        '<taskprogress task="Parallel DNS resolution of 1 host." time="1" percent="90.00"/>',
        '<taskend task="Connect Scan" time="2" extrainfo="1 total ports"/>',
        '<taskprogress task="Service scan" time="3" percent="50.00" remaining="6" etc="9"/>',
        '<taskprogress task="Service scan" time="3" percent="20.00" remaining="6" etc="9"/>',
    ]
    seen = []
    for line in lines:
        tracker.feed(line)
        seen.append(tracker.take()[:3])
    assert seen == [
        (20.0, "Connect Scan", 3.0),
        (20.0, "Connect Scan", 3.0),
        (50.0, "Connect Scan", None),
        (75.0, "Service scan", 6.0),
        (75.0, "Service scan", 6.0),
    ]
