"""``observatory snapshot``: the contract's flags and JSON, held against ``ss``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, connect, listener, observatory

SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "LISTEN": "LISTEN",
    "TIME-WAIT": "TIME_WAIT",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "CLOSING": "CLOSING",
    "UNCONN": "NONE",
}
KEYS = {
    "proto",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "state",
    "pid",
    "process",
    "user",
    "owner",
    "service",
}


def split_endpoint(text: str) -> tuple[str, int | None]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    host = host.split("%", 1)[0]
    return host, None if port == "*" else int(port)


def ss_sockets() -> dict[tuple[str, str, int, str | None, int | None], dict[str, object]]:
    """``ss -tanupe`` parsed: state, pid and owner kind per socket."""
    out = subprocess.run(["ss", "-tanupeH"], capture_output=True, text=True, check=True).stdout
    table: dict[tuple[str, str, int, str | None, int | None], dict[str, object]] = {}
    for line in out.splitlines():
        f = line.split()
        netid, state, local, peer = f[0], f[1], f[4], f[5]
        laddr, lport = split_endpoint(local)
        raddr, rport = split_endpoint(peer)
        assert lport is not None
        rest = " ".join(f[6:])
        pid_m = re.search(r"pid=(\d+)", rest)
        ino_m = re.search(r"ino:(\d+)", rest)
        ino = int(ino_m.group(1)) if ino_m else 0
        owner = "process" if pid_m else ("hidden" if ino else "kernel")
        proto = netid + ("6" if ":" in laddr and not laddr.startswith("::ffff:") else "")
        key = (proto, laddr, lport, raddr if rport else None, rport or None)
        table[key] = {
            "state": SS_STATES[state],
            "pid": int(pid_m.group(1)) if pid_m else None,
            "owner": owner,
        }
    return table


@pytest.mark.parametrize("reader", ["sock_diag", "proc"])
def test_json_agrees_with_ss_on_sockets_we_opened(
    sockets: list[socket.socket], reader: str
) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    ports: set[int] = set()
    srv = listener(sockets)  # LISTEN + an accepted connection
    ports.add(srv.getsockname()[1])
    cli = connect(sockets, srv)
    conn, _ = srv.accept()
    sockets.append(conn)
    waiting = listener(sockets, backlog=1)  # a connection left in the backlog
    ports.add(waiting.getsockname()[1])
    connect(sockets, waiting)
    tw = listener(sockets)  # a TIME_WAIT
    ports.add(tw.getsockname()[1])
    c2 = socket.create_connection(tw.getsockname())
    s2, _ = tw.accept()
    c2.close()
    s2.recv(1)
    s2.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(udp)
    udp.bind(("127.0.0.1", 0))
    ports.add(udp.getsockname()[1])
    try:
        v6 = listener(sockets, "::1")
        ports.add(v6.getsockname()[1])
    except OSError:
        pass
    time.sleep(0.1)
    assert cli.fileno() >= 0

    env = {**os.environ, "OBSERVATORY_SOCKETS": reader}
    result = observatory("snapshot", "--json", "--all", "--udp", env=env)
    theirs = ss_sockets()
    assert result.returncode == 0, result.stderr
    ours = {
        (r["proto"], r["local_addr"], r["local_port"], r["remote_addr"], r["remote_port"]): r
        for r in json.loads(result.stdout)
        if r["local_port"] in ports or r["remote_port"] in ports
    }
    mine = {k: v for k, v in theirs.items() if k[2] in ports or k[4] in ports}
    assert len(mine) >= 7
    assert set(ours) == set(mine)
    for key, row in ours.items():
        expect = mine[key]
        assert (row["state"], row["pid"], row["owner"]) == (
            expect["state"],
            expect["pid"],
            expect["owner"],
        ), key
    owners = {r["owner"] for r in ours.values()}
    assert owners == {"process", "kernel"}
    assert {r["pid"] for r in ours.values() if r["owner"] == "process"} == {os.getpid()}


def test_json_keys_and_types(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    connect(sockets, srv)
    result = observatory("snapshot", "--json", "--port", str(port))
    rows = json.loads(result.stdout)
    assert {r["state"] for r in rows} == {"LISTEN", "ESTABLISHED"}
    for r in rows:
        assert set(r) >= KEYS
        assert r["proto"] in ("tcp", "tcp6", "udp", "udp6")
        assert isinstance(r["local_addr"], str) and isinstance(r["local_port"], int)
        assert r["owner"] in ("process", "hidden", "kernel")
        assert r["pid"] is None or isinstance(r["pid"], int)
        assert r["service"] is None or isinstance(r["service"], str)
        assert port in (r["local_port"], r["remote_port"])
    listen = next(r for r in rows if r["state"] == "LISTEN")
    assert listen["remote_addr"] is None and listen["remote_port"] is None


def test_state_and_family_flags(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    connect(sockets, srv)
    listen = json.loads(observatory("snapshot", "--json", "--listen", "--port", str(port)).stdout)
    assert [r["state"] for r in listen] == ["LISTEN"]
    est = json.loads(observatory("snapshot", "--json", "--established", "--port", str(port)).stdout)
    assert {r["state"] for r in est} == {"ESTABLISHED"} and len(est) == 2
    v6 = json.loads(observatory("snapshot", "--json", "-6", "--port", str(port)).stdout)
    assert v6 == []


def test_text_reads_like_netstat(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    text = observatory("snapshot", "--listen", "--port", str(port)).stdout
    header, row = text.splitlines()[:2]
    assert header.split()[:3] == ["Proto", "Recv-Q", "Send-Q"]
    assert f"127.0.0.1:{port}" in row and "0.0.0.0:*" in row
    assert f"{os.getpid()}/" in row and "LISTEN" in row
    # columns line up under their headers
    assert header.index("Local Address") == row.index(f"127.0.0.1:{port}")


def test_service_names_like_ss_and_nmap() -> None:
    from app.core.services import nmap_services_path, service_name

    assert service_name(6000).lower() == "x11"  # type: ignore[union-attr]
    assert service_name(45321) is None
    if nmap_services_path() is None and os.environ.get("OBSERVATORY_REQUIRE_NMAP") != "1":
        assert service_name(16000) is None  # only nmap knows it
    else:
        assert service_name(16000) == "fmsas"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "70000"], "1 to 65535"),
        (["--port", "http"], "not 'http'"),
        (["--port", "0"], "1 to 65535"),
        (["--listen", "--all"], "not allowed with"),
        (["--frobnicate"], "unrecognized"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    result = observatory("snapshot", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_snapshot_does_not_import_textual() -> None:
    code = (
        "import sys, runpy; sys.argv=['observatory','snapshot'];\n"
        "from app.cli import main\nmain()\n"
        "print('TEXTUAL' if any(m.startswith(('textual','rich')) for m in sys.modules) "
        "else 'CLEAN')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert out.stdout.strip().endswith("CLEAN"), out.stdout + out.stderr


def test_listeners_come_first_as_the_docstring_says(sockets: list[socket.socket]) -> None:
    srv = listener(sockets)
    port = srv.getsockname()[1]
    connect(sockets, srv)
    time.sleep(0.05)
    lines = observatory("snapshot", "--port", str(port)).stdout.splitlines()
    states = [ln.split()[5] for ln in lines[1:] if ln.startswith("tcp")]
    assert states[0] == "LISTEN" and set(states[1:]) == {"ESTABLISHED"}
