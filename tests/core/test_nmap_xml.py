"""nmap's XML read by python-nmap: the same hosts and ports as the hand-written parser gave.

``old_parse_nmap_xml`` below is a copy of the hand-written ElementTree parser
that app.core.scan used before python-nmap read nmap's XML. It is kept here
only as the reference of these parity tests: each real nmap output (from the
argv :func:`build_command` makes, run on loopback) must read the same both
ways. Remove it when the parity no longer needs showing.

Every scan here targets 127.0.0.0/8 or ::1 only (``assert_loopback``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.scan import (
    NmapXmlError,
    NotShown,
    PortResult,
    Scan,
    ScanRequest,
    build_command,
    parse_nmap_xml,
)
from app.core.scan.nmap_xml import _ParsedHost
from app.core.sockets import ProcNetSource
from app.core.targets import expand_ports, parse_ports, ports_of
from tests.conftest import listener, wait_for
from tests.nmaputil import assert_loopback, closed_port, nmap_processes_of, require_nmap


# -- the reference: the hand-written parser, as it was ------------------------
def _old_service_of(elem: ET.Element | None) -> tuple[str, str | None]:
    if elem is None:
        return "unknown", None
    name = elem.get("name") or "unknown"
    if elem.get("tunnel"):
        name = f"{elem.get('tunnel')}/{name}"
    parts = [elem.get(k) for k in ("product", "version", "extrainfo")]
    words = [p for p in parts if p]
    return name, " ".join(words) if words else None


def old_parse_nmap_xml(xml_text: str, requested_ports: str = "") -> list[_ParsedHost]:
    """The parser before python-nmap (a verbatim copy; raises ET.ParseError on bad XML)."""
    root = ET.fromstring(xml_text)
    requested = set(expand_ports(requested_ports))
    hosts: list[_ParsedHost] = []
    for host in root.iter("host"):
        address = ""
        for addr in host.iter("address"):
            if addr.get("addrtype") in ("ipv4", "ipv6"):
                address = addr.get("addr", "")
                break
        status = host.find("status")
        ports: list[PortResult] = []
        groups: list[tuple[str, int, list[ET.Element]]] = []
        ports_elem = host.find("ports")
        if ports_elem is not None:
            for port in ports_elem.iter("port"):
                st = port.find("state")
                service, version = _old_service_of(port.find("service"))
                ports.append(
                    PortResult(
                        port=int(port.get("portid", "0")),
                        proto=port.get("protocol", "tcp"),
                        state=st.get("state", "unknown") if st is not None else "unknown",
                        service=service,
                        reason=st.get("reason") if st is not None else None,
                        address=address,
                        version=version,
                    )
                )
            for extra in ports_elem.iter("extraports"):
                groups.append(
                    (
                        extra.get("state", "unknown"),
                        int(extra.get("count", "0")),
                        list(extra.iter("extrareasons")),
                    )
                )
        not_shown: list[NotShown] = []
        listed = {p.port for p in ports}
        for state, count, reasons in groups:
            group_proto = next((r.get("proto", "") for r in reasons if r.get("proto")), "")
            proto = group_proto or (ports[0].proto if ports else "tcp")
            reason = None
            if reasons:
                top = max(reasons, key=lambda r: int(r.get("count", "0")))
                reason = top.get("reason")
            texts = [r.get("ports") for r in reasons]
            known: str | None
            if reasons and all(texts):
                known = parse_ports(",".join(t for t in texts if t))
            elif len(groups) == 1 and requested:
                rest = sorted(requested - listed)
                known = ports_of(rest) if len(rest) == count else None
            else:
                known = None
            not_shown.append(NotShown(state, count, proto, reason, known))
        ports.sort(key=lambda p: (p.proto, p.port))
        hosts.append(
            _ParsedHost(
                address=address,
                state=status.get("state", "unknown") if status is not None else "unknown",
                timed_out=host.get("timedout") == "true",
                ports=ports,
                not_shown=not_shown,
            )
        )
    return hosts


def same_both_ways(xml_text: str, ports: str) -> list[_ParsedHost]:
    """python-nmap's reading, after checking it equals the old parser's."""
    new = parse_nmap_xml(xml_text, ports)
    assert new == old_parse_nmap_xml(xml_text, ports)
    return new


# -- real nmap output ---------------------------------------------------------
def real_xml(
    target: str, ports: str, scan_type: str = "connect", host_timeout: str | None = None
) -> str:
    """nmap's XML for the argv a Scan runs (``build_command``); loopback only."""
    assert_loopback(target)
    argv = list(build_command(ScanRequest.create(target, ports, scan_type), timeout=30))
    if host_timeout is not None:
        argv[argv.index("--host-timeout") + 1] = host_timeout
    done = subprocess.run(
        [require_nmap(), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return done.stdout


def _banner_server(sockets: list[socket.socket], banner: bytes) -> int:
    """A listener that greets each client with ``banner`` (what nmap -sV reads), then closes."""
    server = listener(sockets)
    server.settimeout(0.2)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the fixture closed it
            with client, contextlib.suppress(OSError):
                # nmap's connect scan resets its first connection: keep serving.
                client.sendall(banner)
                time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    port: int = server.getsockname()[1]
    return port


def test_open_and_closed(sockets: list[socket.socket]) -> None:
    port = listener(sockets).getsockname()[1]
    shut = closed_port()
    ports = parse_ports(f"{port},{shut},6000")
    (host,) = same_both_ways(real_xml("127.0.0.1", ports), ports)
    assert (host.address, host.state, host.timed_out) == ("127.0.0.1", "up", False)
    states = {p.port: (p.state, p.reason) for p in host.ports}
    assert states[port] == ("open", "syn-ack")
    assert states[shut] == ("closed", "conn-refused")
    assert {p.port: p.service for p in host.ports}[6000] == "X11"


def test_folded_ports(sockets: list[socket.socket]) -> None:
    port = listener(sockets, "0.0.0.0").getsockname()[1]
    low = max(1, min(port - 20, 65535 - 40))
    ports = f"{low}-{low + 40}"
    (host,) = same_both_ways(real_xml("127.0.0.2", ports), ports)
    (group,) = host.not_shown
    assert (group.state, group.proto, group.reason) == ("closed", "tcp", "conn-refused")
    assert group.count == 40 and group.ports is not None
    assert [p.port for p in host.ports] == [port]


def test_filtered_by_a_full_accept_queue(sockets: list[socket.socket]) -> None:
    server = listener(sockets, "127.0.0.1", backlog=0)
    port = server.getsockname()[1]
    for _ in range(3):  # one is queued; the kernel drops the others' SYNs
        c = socket.socket()
        sockets.append(c)
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
    source = ProcNetSource(protos=("tcp",))
    wait_for(
        lambda: any(
            s.local_port == port and s.state == "LISTEN" and s.recv_q > 0
            for s in source.poll().sockets
        )
    )
    (host,) = same_both_ways(real_xml("127.0.0.1", str(port)), str(port))
    (found,) = host.ports
    assert (found.state, found.reason) == ("filtered", "no-response")


def test_service_version(sockets: list[socket.socket]) -> None:
    port = _banner_server(sockets, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    (host,) = same_both_ways(real_xml("127.0.0.1", str(port), "version"), str(port))
    (found,) = host.ports
    assert (found.state, found.service) == ("open", "ssh")
    assert found.version == "OpenSSH 9.2p1 Debian 2+deb12u3 protocol 2.0"


def test_host_timeout() -> None:
    # nmap's own --host-timeout expires at once: the host comes back timedout="true".
    xml_text = real_xml("127.0.0.1", "1-1000", host_timeout="1ms")
    (host,) = same_both_ways(xml_text, "1-1000")
    assert host.timed_out


def test_a_network_of_hosts(sockets: list[socket.socket]) -> None:
    port = listener(sockets, "0.0.0.0").getsockname()[1]
    shut = closed_port()
    ports = parse_ports(f"{port},{shut}")
    hosts = same_both_ways(real_xml("127.0.0.4/30", ports), ports)
    assert [h.address for h in hosts] == [f"127.0.0.{n}" for n in range(4, 8)]
    assert all({p.port: p.state for p in h.ports} == {port: "open", shut: "closed"} for h in hosts)


def test_no_host_scanned() -> None:
    # nmap's complete XML with no <host> (here: the only target excluded).
    assert_loopback("127.0.0.1")
    done = subprocess.run(
        [
            require_nmap(),
            "-oX",
            "-",
            "-sT",
            "-Pn",
            "-n",
            "-p",
            "1",
            "--exclude",
            "127.0.0.1",
            "--",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    assert same_both_ways(done.stdout, "1") == []


def test_ipv6_loopback(sockets: list[socket.socket]) -> None:
    try:
        port = listener(sockets, "::1").getsockname()[1]
    except OSError:
        pytest.skip("::1 is not configured")
    shut = closed_port(socket.AF_INET6, addr="::1")
    ports = parse_ports(f"{port},{shut}")
    (host,) = same_both_ways(real_xml("::1", ports), ports)
    assert host.address == "::1"
    assert {p.port: p.state for p in host.ports} == {port: "open", shut: "closed"}


@pytest.mark.skipif(os.geteuid() != 0, reason="SYN and UDP scans need root")
def test_syn_and_udp(sockets: list[socket.socket]) -> None:
    port = listener(sockets).getsockname()[1]
    shut = closed_port()
    tcp_ports = parse_ports(f"{port},{shut}")
    (syn,) = same_both_ways(real_xml("127.0.0.1", tcp_ports, "syn"), tcp_ports)
    assert {p.port: p.reason for p in syn.ports} == {port: "syn-ack", shut: "reset"}
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(udp)
    udp.bind(("127.0.0.1", 0))
    uport = udp.getsockname()[1]
    ushut = closed_port(kind=socket.SOCK_DGRAM)
    udp_ports = parse_ports(f"{uport},{ushut}")
    (host,) = same_both_ways(real_xml("127.0.0.1", udp_ports, "udp"), udp_ports)
    assert {(p.port, p.proto): (p.state, p.reason) for p in host.ports} == {
        (uport, "udp"): ("open|filtered", "no-response"),
        (ushut, "udp"): ("closed", "port-unreach"),
    }


# -- fixed documents: what loopback cannot produce cheaply --------------------
_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -oX - -sT -sV -Pn -n -p 44651 -&#45; 127.0.0.1" \
start="1796130010" version="7.93" xmloutputversion="1.05">
<scaninfo type="connect" protocol="tcp" numservices="1" services="44651"/>
"""
_TAIL = """<runstats><finished time="1796130016" timestr="Tue Dec  1 13:00:16 2026" \
elapsed="6.41" exit="success"/><hosts up="1" down="0" total="1"/>
</runstats>
</nmaprun>
"""
# nmap 7.93 -sV on a loopback TLS server speaking SSH inside (a self-signed
# certificate; 12 s of probes, too slow to run each time).
TLS_XML = (
    _HEAD
    + """<host starttime="1796130010" endtime="1796130016">\
<status state="up" reason="user-set" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/>
<hostnames>
</hostnames>
<ports><port protocol="tcp" portid="44651"><state state="open" reason="syn-ack" reason_ttl="0"/>\
<service name="ssh" product="OpenSSH" version="9.2p1 Debian 2+deb12u3" extrainfo="protocol 2.0" \
ostype="Linux" tunnel="ssl" method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe>\
</service></port>
</ports>
</host>
"""
    + _TAIL
)
# A host that did not answer discovery (our scans run with -Pn, so only another
# nmap's output has one); loopback always answers.
DOWN_XML = (
    _HEAD
    + """<host><status state="down" reason="no-response" reason_ttl="0"/>
<address addr="127.0.0.9" addrtype="ipv4"/>
</host>
"""
    + _TAIL
)


def test_tunnelled_service_and_a_host_down() -> None:
    (tls,) = same_both_ways(TLS_XML, "44651")
    assert [(p.service, p.version) for p in tls.ports] == [
        ("ssl/ssh", "OpenSSH 9.2p1 Debian 2+deb12u3 protocol 2.0")
    ]
    (down,) = same_both_ways(DOWN_XML, "")
    assert (down.address, down.state, down.ports, down.not_shown) == ("127.0.0.9", "down", [], [])


def test_reading_runs_no_nmap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # python-nmap's PortScanner() would run `nmap -V`; the reader never does.
    monkeypatch.setenv("PATH", str(tmp_path))
    (host,) = parse_nmap_xml(TLS_XML, "44651")
    assert host.ports[0].port == 44651
    assert nmap_processes_of() == []


# -- bad XML: an error in words, never a traceback ----------------------------
def _cuts(xml_text: str) -> Iterator[str]:
    yield ""
    yield xml_text[: len(xml_text) // 2]
    yield xml_text[: xml_text.rindex("</nmaprun>")]
    yield "Starting Nmap 7.93 ( https://nmap.org )\n"


def test_cut_or_empty_xml_is_refused_both_ways() -> None:
    for text in _cuts(TLS_XML):
        with pytest.raises(ET.ParseError):
            old_parse_nmap_xml(text)
        with pytest.raises(NmapXmlError):
            parse_nmap_xml(text)


def test_xml_python_nmap_cannot_read_is_refused_in_words() -> None:
    # nmap's DTD requires a host's <address> and a port's <state>; python-nmap
    # stops without them (the old parser guessed "" and "unknown").
    no_address = DOWN_XML.replace('<address addr="127.0.0.9" addrtype="ipv4"/>', "")
    no_state = TLS_XML.replace('<state state="open" reason="syn-ack" reason_ttl="0"/>', "")
    for text in (no_address, no_state):
        with pytest.raises(NmapXmlError, match="lacks what python-nmap needs"):
            parse_nmap_xml(text)


def _fake_nmap(tmp_path: Path, stdout: str, stderr: str, code: int) -> None:
    """An ``nmap`` on PATH that writes ``stdout`` and ``stderr`` and exits with ``code``."""
    (tmp_path / "out.xml").write_text(stdout)
    (tmp_path / "err.txt").write_text(stderr)
    script = tmp_path / "nmap"
    script.write_text(
        f"#!/bin/sh\ncat {tmp_path}/out.xml\ncat {tmp_path}/err.txt >&2\nexit {code}\n"
    )
    script.chmod(0o755)


@pytest.mark.parametrize(
    ("stdout", "stderr", "code", "words"),
    [
        ("", "", 1, "nmap failed: nmap ended with code 1 and wrote no results"),
        ("", "QUITTING!\n", 1, "nmap failed: nmap ended with code 1 and wrote no results"),
        (
            TLS_XML[:300],
            "Failed to open device lo\nQUITTING!\n",
            1,
            "nmap failed: Failed to open device lo",
        ),
        (
            TLS_XML[: TLS_XML.rindex("</nmaprun>")],
            "",
            0,
            "nmap failed: nmap ended with code 0 and wrote no results",
        ),
    ],
)
def test_bad_output_gives_the_student_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stdout: str, stderr: str, code: int, words: str
) -> None:
    _fake_nmap(tmp_path, stdout, stderr, code)
    monkeypatch.setattr("app.core.scan.runner.find_nmap", lambda: str(tmp_path / "nmap"))
    result = Scan(ScanRequest.create("127.0.0.1", "22")).run()
    assert (result.status, result.error, result.ports) == ("failed", words, ())


def test_nmap_killed_mid_scan_gives_words(sockets: list[socket.socket]) -> None:
    require_nmap()
    server = listener(sockets)  # never accepts nor speaks: -sV waits on it for seconds
    scan = Scan(
        ScanRequest.create("127.0.0.1", str(server.getsockname()[1]), "version"), timeout=30
    )
    scan.start()
    pid = wait_for(lambda: scan.pid if scan.pid and nmap_processes_of(scan.pid) else None)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)  # the nmap this test started, by its pid
    result = scan.wait(timeout=10)
    assert result is not None
    assert result.status == "failed" and result.error is not None
    assert re.fullmatch(
        r"nmap was killed by SIGKILL after \d+\.\d s, not by the observatory \(another "
        r"program, or the system short of memory\); nothing it found is shown",
        result.error,
    ), result.error
    assert nmap_processes_of(pid) == []
