"""``observatory scan``: the contract's JSON, nmap's table, and refusals in one line.

Scans target loopback only (127.0.0.0/8), as the workplace requires.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, listener, observatory, wait_for
from tests.nmaputil import closed_port, nmap_states, require_nmap


def test_json_contract(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = listener(sockets).getsockname()[1]
    shut = closed_port()
    done = observatory("scan", "127.0.0.1", "-p", f"{port},{shut}", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    data = json.loads(done.stdout)
    assert data["target"] == "127.0.0.1" and data["scanner"] == "nmap"
    assert isinstance(data["ports"], list) and len(data["ports"]) == 2
    by_port = {p["port"]: p for p in data["ports"]}
    for entry in data["ports"]:
        assert {"port", "proto", "state", "service", "listener"} <= set(entry)
        assert isinstance(entry["port"], int) and not isinstance(entry["port"], bool)
        assert entry["proto"] == "tcp"
        assert isinstance(entry["state"], str) and isinstance(entry["service"], str)
    opened = by_port[port]
    assert opened["state"] == "open"
    assert opened["listener"] == {
        "pid": os.getpid(),
        "process": opened["listener"]["process"],
        "user": opened["listener"]["user"],
        "address": "127.0.0.1",
    }
    assert isinstance(opened["listener"]["process"], str)
    assert isinstance(opened["listener"]["user"], str)
    assert by_port[shut]["state"] == "closed" and by_port[shut]["listener"] is None
    assert {p: e["state"] for p, e in by_port.items()} == nmap_states(f"{port},{shut}")
    assert data["command"][0] == "nmap" and isinstance(data["duration"], float)


def test_text_is_nmaps_table_with_listeners(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = listener(sockets, "0.0.0.0").getsockname()[1]
    done = observatory("scan", "127.0.0.1", "-p", f"{port},6000")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Command: nmap ") and lines[0].endswith("-- 127.0.0.1")
    header = next(line for line in lines if line.startswith("PORT"))
    assert header.split() == ["PORT", "STATE", "SERVICE", "LISTENER"]
    row = next(line for line in lines if line.startswith(f"{port}/tcp "))
    assert row.split()[1:3] == ["open", "unknown"]
    assert row.endswith(f"{os.getpid()}/{row.split()[3].split('/', 1)[1]} on 0.0.0.0")
    x11 = next(line for line in lines if line.startswith("6000/tcp "))
    assert x11.split()[2] == "X11"
    assert any("completed a handshake" in line for line in lines)
    assert lines[-1].startswith("Scanned in ") and lines[-1].endswith(" s")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["127.0.0.1 -oN {tmp}/x"], "one target at a time"),
        (["-iL /etc/passwd"], "cannot start with '-'"),
        (["$(touch {tmp}/y)"], "one target at a time"),
        (["`touch`"], "is not an IP address"),
        ([";"], "is not an IP address"),
        (["127.0.0.1", "-p", "1-70000"], "70000 is outside"),
        (["127.0.0.1", "-p", "http"], "not 'http'"),
        (["127.0.0.0/16"], "scan at most 256"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(
    args: list[str], words: str, tmp_path: Path
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # "--" lets a target that starts with '-' reach the validator, as a shell user could.
    dashes = ["--"] if args[0].startswith("-") else []
    done = observatory("scan", *dashes, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert done.stderr.startswith("observatory scan: ")
    assert list(tmp_path.iterdir()) == []


def test_option_looking_target_without_dashes_is_refused(tmp_path: Path) -> None:
    done = observatory("scan", "-iL", "/etc/passwd", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_unknown_type_is_refused() -> None:
    done = observatory("scan", "127.0.0.1", "--type", "ping")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "invalid choice" in done.stderr


def test_without_nmap_on_path(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = observatory("scan", "127.0.0.1", "-p", "22", env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "observatory scan: nmap is not installed: install it with `sudo apt install nmap`\n"
    )


def test_raw_types_as_a_normal_user_say_why(
    as_nobody: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    require_nmap()
    for scan_type, words in (
        ("syn", "SYN scans need root: nmap sends raw packets"),
        ("udp", "UDP scans need root"),
    ):
        done = as_nobody("scan", "127.0.0.1", "-p", "22", "--type", scan_type)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
        assert "--type connect" in done.stderr


def test_closed_on_another_loopback_address_explains(sockets: list[socket.socket]) -> None:
    require_nmap()
    port = listener(sockets, "127.0.0.1").getsockname()[1]
    done = observatory("scan", "127.0.0.2", "-p", str(port), "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["ports"]
    assert entry["state"] == "closed"
    assert entry["listener"]["pid"] == os.getpid()
    assert entry["listener"]["address"] == "127.0.0.1"
    assert f"127.0.0.1:{port} only" in entry["explanation"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stopping_the_command_stops_nmap(sockets: list[socket.socket], signum: int) -> None:
    require_nmap()
    port = listener(sockets).getsockname()[1]  # silent: nmap -sV waits on it for seconds
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "scan", "127.0.0.1", "-p", str(port), "--type", "version"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        found = wait_for(
            lambda: [
                c for c in psutil.Process(proc.pid).children(recursive=True) if c.name() == "nmap"
            ]
        )
        assert isinstance(found, list)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    for nmap in found:
        assert not nmap.is_running(), f"nmap {nmap.pid} outlived observatory scan"
