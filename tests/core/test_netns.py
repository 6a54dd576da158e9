"""Lab hosts as network namespaces (app.core.netns): real namespaces, real TCP, as root.

Every test that uses lab addresses holds a blackhole route for them in the machine's
own namespace, so a bug cannot send a packet anywhere; each checks afterwards that the
machine's links and routes are as before and that no namespace of this run is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import netns
from app.core.netns import LabHost, LabNetwork, NetnsError, NetnsUnavailable
from app.core.sockets import DiagSource
from tests.conftest import AsNobody, _ip

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="lab hosts (network namespaces) need root")
PAIR = [LabHost("server", ("10.0.2.15/24",)), LabHost("client", ("10.0.2.16/24",))]


def _ours() -> list[str]:
    return [ns for ns in netns._namespaces() if ns.startswith(f"obs{os.getpid()}-")]


@pytest.fixture
def network(blackhole: None) -> Iterator[LabNetwork]:
    with LabNetwork() as lab:
        yield lab


def _start(prefix: list[str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def _line(proc: subprocess.Popen[str], pattern: str) -> str:
    """The first line of ``proc``'s output matching ``pattern``; fail after 5 s."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if re.search(pattern, line):
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5.0)
    assert found, f"no line matching {pattern!r} from {proc.args!r}"
    return found[0]


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:  # by pid: only what this test started
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _tcp_in(ns: str) -> list[tuple[str, int, str | None, int | None, str, int | None]]:
    source = netns.in_namespace(ns, lambda: DiagSource(("tcp",)))
    try:
        snap = source.poll()
    finally:
        source.close()
    return [
        (s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.state, s.pid)
        for s in snap.sockets
    ]


@needs_root
def test_lecture_pair_across_two_hosts(network: LabNetwork) -> None:
    started = time.perf_counter()
    network.create(PAIR)
    made = time.perf_counter() - started
    assert made < 2.0
    assert sorted(_ours()) == sorted(f"obs{os.getpid()}-{n}" for n in ("server", "client", "sw"))
    procs: list[subprocess.Popen[str]] = []
    try:
        server = _start(
            network.exec_prefix("server"), "app.labs.tcp_server", "6000", "--bind", "0.0.0.0"
        )
        procs.append(server)
        _line(server, r"^Listening on 0\.0\.0\.0:6000")
        client = _start(
            network.exec_prefix("client"), "app.labs.tcp_client", "10.0.2.15", "hello", "6000"
        )
        procs.append(client)
        connected = _line(client, r"^Connected ")
        port = int(re.search(r"10\.0\.2\.16:(\d+) -> 10\.0\.2\.15:6000", connected).group(1))  # type: ignore[union-attr]
        assert network.pids("server") == [server.pid]
        # Each end, seen from this (the machine's own) namespace through a sock_diag
        # socket opened inside the host: its own address, and its owner found by pid.
        on_server = _tcp_in(network.namespace("server"))
        assert ("0.0.0.0", 6000, None, None, "LISTEN", server.pid) in on_server
        assert ("10.0.2.15", 6000, "10.0.2.16", port, "ESTABLISHED", server.pid) in on_server
        on_client = _tcp_in(network.namespace("client"))
        assert on_client == [("10.0.2.16", port, "10.0.2.15", 6000, "ESTABLISHED", client.pid)]
        assert not [s for s in _tcp_in_root() if "10.0.2." in f"{s[0]} {s[2]}"]
    finally:
        _stop(procs)
    started = time.perf_counter()
    network.destroy()
    assert time.perf_counter() - started < 1.0
    assert _ours() == []
    network.destroy()  # again: nothing to do, no error


def _tcp_in_root() -> list[tuple[str, int, str | None, int | None, str, int | None]]:
    source = DiagSource(("tcp",))
    try:
        return [
            (s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.state, s.pid)
            for s in source.poll().sockets
        ]
    finally:
        source.close()


@needs_root
def test_hosts_interfaces_and_no_way_out(network: LabNetwork) -> None:
    network.create([*PAIR[:1], LabHost("client", ("10.0.2.16/24", "10.0.2.17/24"))])
    server = netns.interfaces_in(network.namespace("server"))
    assert [i.name for i in server] == ["lo", "eth0"]
    assert all(i.up for i in server)
    assert server[0].ipv4 == ["127.0.0.1"]
    assert server[1].ipv4 == ["10.0.2.15"]
    assert [a.prefixlen for a in server[1].addresses if a.family == 4] == [24]
    client = netns.interfaces_in(network.namespace("client"))
    assert client[1].ipv4 == ["10.0.2.16", "10.0.2.17"]
    # No default route: the only route is the lab network itself.
    routes = _ip("-n", network.namespace("client"), "route").splitlines()
    assert [r.split()[0] for r in routes] == ["10.0.2.0/24"]
    # The switch: a bridge and one port per host, no address at all.
    switch = netns.interfaces_in(network.switch_namespace)
    assert {i.name for i in switch} == {"lo", "br0", f"o{os.getpid()}s0", f"o{os.getpid()}s1"}
    assert all(i.addresses == () for i in switch if i.name != "lo")
    assert network.commands[0] == f"ip netns add obs{os.getpid()}-sw"
    assert network.namespace("client") in netns.find_namespaces("client")
    assert netns.find_namespaces("nosuch") == []


@needs_root
def test_in_namespace_switches_only_its_own_thread(network: LabNetwork) -> None:
    network.create(PAIR[:1])
    mine = os.readlink("/proc/thread-self/ns/net")
    inside = netns.in_namespace(
        network.namespace("server"), lambda: os.readlink("/proc/thread-self/ns/net")
    )
    assert inside != mine
    assert os.readlink("/proc/thread-self/ns/net") == mine

    def boom() -> None:
        raise ValueError("from inside")

    with pytest.raises(ValueError, match="from inside"):
        netns.in_namespace(network.namespace("server"), boom)
    with pytest.raises(NetnsError, match="no network namespace obs0-nosuch"):
        netns.in_namespace("obs0-nosuch", lambda: None)
    with pytest.raises(NetnsError, match="not a namespace name"):
        netns.in_namespace("../x", lambda: None)


@needs_root
@pytest.mark.parametrize(
    ("hosts", "words"),
    [
        ([LabHost("a", ("10.0.2.300/24",))], r"'10\.0\.2\.300/24' is not an address in CIDR"),
        ([LabHost("a", ("10.0.2.15",))], r"needs a prefix length, as in 10\.0\.2\.15/24"),
        ([LabHost("a", ("10.0.2.15/24",)), LabHost("a", ("10.0.2.16/24",))], "two hosts are named"),
        ([LabHost("a", ("10.0.2.15/24",)), LabHost("b", ("10.0.2.15/16",))], "already host 'a'"),
        ([LabHost("sw", ("10.0.2.15/24",))], "taken by the lab network's switch"),
        ([LabHost("a b", ())], "is not usable"),
        ([], "at least one host"),
    ],
)
def test_bad_hosts_refused_in_words(network: LabNetwork, hosts: list[LabHost], words: str) -> None:
    with pytest.raises(NetnsError, match=words):
        network.create(hosts)
    assert _ours() == []
    assert network.hosts == ()


@needs_root
def test_failure_halfway_removes_what_was_made(
    network: LabNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = netns._run

    def failing(cmd: list[str], log: list[str] | None = None) -> str:
        if "addr" in cmd and "10.0.2.16/24" in cmd:
            raise NetnsError("`ip addr add` failed: made up by the test")
        return real(cmd, log)

    monkeypatch.setattr(netns, "_run", failing)
    with pytest.raises(NetnsError, match="made up by the test"):
        network.create(PAIR)
    assert _ours() == []


@needs_root
def test_an_existing_namespace_is_left_alone(blackhole: None) -> None:
    theirs = f"obs{os.getpid()}-client"
    _ip("netns", "add", theirs)
    try:
        lab = LabNetwork()
        with pytest.raises(NetnsError, match=f"a namespace {theirs} exists already"):
            lab.create(PAIR)
        assert _ours() == [theirs]
    finally:
        _ip("netns", "del", theirs)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not netns._pid_alive(proc.pid)
    return proc.pid


@needs_root
def test_sweep_stale_removes_a_dead_runs_and_only_those(blackhole: None) -> None:
    dead = _dead_pid()
    holder = subprocess.Popen(["sleep", "30"])  # a live "run"
    made = [f"obs{dead}-sw", f"obs{dead}-x", f"obs{holder.pid}-x", "obsx-1", f"other{dead}-x"]
    try:
        for ns in made:
            _ip("netns", "add", ns)
        said = [s for s in netns.sweep_stale() if f"pid {dead})" in s or str(holder.pid) in s]
        assert said == [
            "Removed the lab network of a run that ended without cleaning up"
            f" (pid {dead}): namespaces obs{dead}-sw, obs{dead}-x."
        ]
        left = netns._namespaces()
        assert f"obs{dead}-x" not in left and f"obs{dead}-sw" not in left
        assert {f"obs{holder.pid}-x", "obsx-1", f"other{dead}-x"} <= set(left)
        holder.kill()
        holder.wait()
        said = netns.sweep_stale()
        assert any(f"(pid {holder.pid}): namespaces obs{holder.pid}-x." in s for s in said)
        assert {"obsx-1", f"other{dead}-x"} <= set(netns._namespaces())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


CREATE_AND = """
import os, signal, sys
from app.core.netns import LabHost, LabNetwork
lab = LabNetwork()
lab.create([LabHost("server", ("10.0.2.15/24",))])
print(lab.namespace("server"), flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "raise":
    raise RuntimeError("boom")
"""


@needs_root
@pytest.mark.parametrize("how", ["exit", "raise", "kill"])
def test_every_way_out(blackhole: None, how: str) -> None:
    """Normal exit and an exception clean up (atexit); after SIGKILL, sweep_stale does."""
    done = subprocess.run(
        [sys.executable, "-c", CREATE_AND, how], capture_output=True, text=True, cwd=REPO
    )
    ns = done.stdout.strip()
    assert ns == f"obs{done_pid(ns)}-server", done.stderr
    pid = done_pid(ns)
    try:
        if how != "kill":
            assert done.returncode == (1 if how == "raise" else 0)
            assert ns not in netns._namespaces()
            return
        assert done.returncode == -signal.SIGKILL
        assert {f"obs{pid}-sw", ns} <= set(netns._namespaces())
        said = [s for s in netns.sweep_stale() if f"(pid {pid})" in s]
        assert said == [
            "Removed the lab network of a run that ended without cleaning up"
            f" (pid {pid}): namespaces obs{pid}-sw, {ns}."
        ]
        assert not [n for n in netns._namespaces() if n.startswith(f"obs{pid}-")]
    finally:
        for left in netns._namespaces():
            if left.startswith(f"obs{pid}-"):
                subprocess.run(["ip", "netns", "del", left], check=False)


def done_pid(ns: str) -> int:
    match = re.match(r"obs(\d+)-", ns)
    return int(match.group(1)) if match else -1


@needs_root
def test_destroy_from_another_thread_and_twice(network: LabNetwork) -> None:
    network.create(PAIR)
    threads = [threading.Thread(target=network.destroy) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _ours() == []
    network.create(PAIR)  # made again after a destroy
    assert len(_ours()) == 3
    netns.destroy_all()
    assert _ours() == []


def test_refused_in_words_without_root(as_nobody: AsNobody) -> None:
    code = (
        "from app.core.netns import LabHost, LabNetwork, NetnsUnavailable\n"
        "try:\n"
        "    LabNetwork().create([LabHost('server', ('10.0.2.15/24',))])\n"
        "except NetnsUnavailable as exc:\n"
        "    print(exc)\n"
    )
    done = as_nobody("-c", code)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    said = done.stdout.strip()
    assert said.startswith("Lab hosts need root:")
    assert "sudo" in said


def test_refusal_is_none_as_root_only() -> None:
    if ROOT:
        assert netns.refusal() is None
    else:
        assert netns.refusal() == netns.NEEDS_ROOT
        with pytest.raises(NetnsUnavailable, match="need root"):
            LabNetwork().create(PAIR)
