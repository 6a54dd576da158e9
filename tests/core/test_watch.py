"""``observatory watch`` and its event stream, against real loopback connections.

As root the stream reads the kernel tracepoint: every transition of a
connection that lives 20 ms, the lecture's client and server included. As
user nobody it has the destroy groups and samples: every such connection
still shows up (closed). Signals end it with exit 0 and no tracefs instance left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main
from app.core import tracepoint
from app.core.watch import EventStream, WatchEvent
from tests.conftest import REPO, free_port, listener, observatory, wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the tracepoint needs root")
INSTANCES = Path(tracepoint.TRACEFS) / "instances"
KEYS = [
    "at",
    "proto",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "old_state",
    "new_state",
    "pid",
    "process",
    "source",
]


def start_watch(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``observatory watch ARGS`` running, and the line it said first on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "watch", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    return proc, proc.stderr.readline()


def short_connections(port: int, count: int = 5) -> list[int]:
    """``count`` connections to 127.0.0.1:port that live 20 ms; their local ports."""
    ports = []
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as client:
            ports.append(client.getsockname()[1])
            time.sleep(0.02)
    return ports


def transitions(events: list[dict[str, object]], local_port: int) -> list[tuple[object, object]]:
    return [
        (e["old_state"], e["new_state"])
        for e in events
        if e["local_port"] == local_port and e["source"] == "tracepoint"
    ]


def test_event_json_has_the_contract_keys() -> None:
    event = WatchEvent(
        1.5, "tcp", "127.0.0.1", 6000, None, None, "CLOSE", "LISTEN", 7, "srv", "tracepoint"
    )
    assert list(event.to_json()) == KEYS
    assert event.key == "tcp 127.0.0.1:6000 *"


@needs_root
def test_root_watch_sees_every_transition_of_short_and_lab_connections() -> None:
    port = free_port()
    watch, said = start_watch("--json", "--port", str(port), "--duration", "3")
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "lab", "run", "tcp-server", str(port)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "every transition" in said and "tracepoint" in said, said
        assert server.stdout is not None
        assert server.stdout.readline().startswith("Listening on"), server.stderr
        clients = short_connections(port)
        lab = observatory("lab", "run", "tcp-client", "127.0.0.1", "hola", str(port), "--hold", "0")
        assert lab.returncode == 0, lab.stderr
        connected = lab.stdout.splitlines()[0]  # "Connected 127.0.0.1:39846 -> 127.0.0.1:P"
        lab_port = int(connected.split()[1].rsplit(":", 1)[1])
        out, err = watch.communicate(timeout=15)
    finally:
        for proc in (watch, server):
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    assert watch.returncode == 0 and err == "", err
    assert 3 <= elapsed < 6, elapsed
    events = [json.loads(line) for line in out.splitlines()]
    assert all(list(e) == KEYS for e in events)
    assert all(port in (e["local_port"], e["remote_port"]) for e in events)
    for client in clients:
        path = transitions(events, client)
        assert ("SYN_SENT", "ESTABLISHED") in path and ("ESTABLISHED", "FIN_WAIT1") in path, path

    # The lecture's client against the lecture's server: the three-way handshake...
    (connect,) = [
        e
        for e in events
        if (e["old_state"], e["new_state"]) == ("CLOSE", "SYN_SENT")
        and e["process"] == "tcp-client"
    ]
    assert (connect["local_port"], connect["remote_port"]) == (0, port)  # no port chosen yet
    client_path = transitions(events, lab_port)
    server_path = [
        (e["old_state"], e["new_state"])
        for e in events
        if e["local_port"] == port and e["remote_port"] == lab_port
    ]
    assert client_path[:1] == [("SYN_SENT", "ESTABLISHED")], client_path
    assert server_path[:2] == [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED")], server_path
    # ... and the FIN sequence: the client closes first (--hold 0), the server follows.
    assert client_path[1:] == [
        ("ESTABLISHED", "FIN_WAIT1"),
        ("FIN_WAIT1", "FIN_WAIT2"),
        ("FIN_WAIT2", "CLOSE"),
    ], client_path
    assert server_path[2:] == [
        ("ESTABLISHED", "CLOSE_WAIT"),
        ("CLOSE_WAIT", "LAST_ACK"),
        ("LAST_ACK", "CLOSE"),
    ], server_path
    owners = {e["process"] for e in events if e["local_port"] == lab_port and e["pid"]}
    assert owners == {"tcp-client"}, owners
    assert {e["process"] for e in events if e["local_port"] == port and e["pid"]} == {"tcp-server"}
    # TIME_WAIT is the socket table's to say (when a sample came after it): never twice.
    for e in events:
        if e["source"] == "poll":
            assert e["new_state"] == "TIME_WAIT" and e["old_state"] == "FIN_WAIT2", e


@needs_root
def test_stream_adds_time_wait_and_udp_once_each(sockets: list[socket.socket]) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    with EventStream([port], udp=True, interval=0.2) as stream:
        assert stream.mode == "tracepoint"
        assert stream.seeing.startswith("every transition") and "TIME_WAIT and UDP" in stream.seeing
        assert stream.read(0) == []  # the baseline sample: the listener is no event
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        cport = client.getsockname()[1]
        client.sendall(b"hola")
        assert conn.recv(4) == b"hola"
        client.close()  # the client closes first: its end goes to TIME_WAIT
        conn.recv(1)
        conn.close()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", port))
        seen: list[WatchEvent] = []

        def sampled(state: str, proto: str) -> list[WatchEvent]:
            seen.extend(stream.read(0.1))
            return [e for e in seen if e.new_state == state and e.proto == proto]

        (time_wait,) = wait_for(lambda: sampled("TIME_WAIT", "tcp"), timeout=5, what="TIME_WAIT")
        wait_for(lambda: sampled("NONE", "udp"), timeout=5, what="the UDP socket sampled")
        udp.close()
        (udp_closed,) = wait_for(lambda: sampled("CLOSE", "udp"), timeout=5, what="UDP close")
        time.sleep(0.5)  # more samples: nothing is reported again
        seen.extend(stream.read(0.1))
        instance = stream._tracer.instance if stream._tracer else None
        assert instance and os.path.isdir(instance)
    assert not os.path.exists(instance)  # close() removed our tracefs instance
    assert (time_wait.local_port, time_wait.old_state, time_wait.source) == (
        cport,
        "FIN_WAIT2",
        "poll",
    )  # the tracepoint said FIN_WAIT2 -> CLOSE
    assert (udp_closed.old_state, udp_closed.source, udp_closed.pid) == (
        "NONE",
        "destroy",
        os.getpid(),
    )
    keys = [(e.key, e.old_state, e.new_state) for e in seen]
    assert len(keys) == len(set(keys)), seen  # no transition twice, from any two sources
    assert all(
        e.source == "tracepoint" for e in seen if e.proto == "tcp" and e.new_state != "TIME_WAIT"
    )
    # A line the kernel made in softirq has no task of its own: the owner comes from
    # the same socket's other lines.
    client_end = [e for e in seen if e.local_port == cport and e.source == "tracepoint"]
    assert client_end and all(e.pid == os.getpid() for e in client_end), client_end


NOBODY_WATCH = """
import json, socket, subprocess, sys, time
port = {port}
watch = subprocess.Popen([sys.executable, "-m", "app", "watch", "--json", "--port", str(port),
                          "--duration", "2.5"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
said = watch.stderr.readline()
server = socket.socket()
server.bind(("127.0.0.1", port))
server.listen()
clients = []
for _ in range(5):
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    time.sleep(0.02)
    clients.append(client.getsockname()[1])
    client.close()
    conn.close()
held = socket.create_connection(("127.0.0.1", port))  # long enough for a sample
conn, _ = server.accept()
time.sleep(1.3)
held_port = held.getsockname()[1]
held.close()
conn.close()
out, err = watch.communicate(timeout=20)
print(json.dumps({{"said": said, "err": err, "out": out, "rc": watch.returncode,
                  "clients": clients, "held": held_port}}))
"""


def test_unprivileged_sees_every_short_connection_close(
    as_nobody: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    port = free_port()
    result = as_nobody("-c", NOBODY_WATCH.format(port=port))
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["rc"] == 0 and run["err"] == "", run["err"]
    said = run["said"]
    assert "sampled" in said and "run as root to see every transition" in said, said
    events = [json.loads(line) for line in run["out"].splitlines()]
    assert events and all(list(e) == KEYS for e in events)
    assert {e["source"] for e in events} <= {"destroy", "poll"}
    for client in run["clients"]:  # each lived 20 ms, between two samples: its close is seen
        closes = [e for e in events if e["local_port"] == client and e["source"] == "destroy"]
        assert [e["new_state"] for e in closes] == ["CLOSE"], (client, events)
    # The one a sample saw: its close says the state it had, and whose it was.
    (held,) = [e for e in events if e["local_port"] == run["held"] and e["source"] == "destroy"]
    assert held["old_state"] == "ESTABLISHED" and held["new_state"] == "CLOSE"
    assert held["pid"] and held["process"], held


def tracefs_mounted() -> bool:
    return tracepoint._tracefs_mount() is not None


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_ends_watch_cleanly(sig: signal.Signals) -> None:
    mounted_before = tracefs_mounted()
    watch, said = start_watch("--port", str(free_port()))
    try:
        assert "every transition" in said, said
        assert (INSTANCES / f"observatory-{watch.pid}").is_dir()
        watch.send_signal(sig)
        out, err = watch.communicate(timeout=10)
    finally:
        watch.kill()
        watch.wait()
    assert watch.returncode == 0, (sig, err)
    assert "Traceback" not in err and err == "", err
    left = (
        [p.name for p in INSTANCES.glob(f"observatory-{watch.pid}*")] if tracefs_mounted() else []
    )
    assert left == []
    if not mounted_before:
        # Unmounted again, unless another observatory holds an instance right now.
        others = list(INSTANCES.glob("observatory-*")) if tracefs_mounted() else []
        assert not tracefs_mounted() or others


def test_duration_ends_on_time() -> None:
    watch, said = start_watch("--port", str(free_port()), "--duration", "1")
    started = time.monotonic()
    out, err = watch.communicate(timeout=10)
    elapsed = time.monotonic() - started
    assert watch.returncode == 0 and err == "" and out == "", err
    assert said.startswith("observatory watch: ")
    # The first sample of the socket table must finish: on a machine with 24,000
    # sockets it takes up to a second.
    assert 1 <= elapsed < 2.5, elapsed


@pytest.mark.parametrize(
    "args",
    [
        ["--duration", "0"],
        ["--duration", "-2"],
        ["--duration", "soon"],
        ["--duration", "nan"],
        ["--port", "0"],
        ["--port", "70000"],
        ["--port", "http"],
    ],
)
def test_bad_arguments_are_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["watch", *args])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("observatory watch: "), err


def test_bad_argument_as_a_user_sees_it() -> None:
    result = observatory("watch", "--duration", "0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "observatory watch: argument --duration: seconds must be more than 0, not 0"
    ]
