"""Helpers for tests that run the real nmap, on loopback only."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET

import psutil
import pytest


def require_nmap() -> str:
    """nmap's path; skip the test without nmap, or fail when OBSERVATORY_REQUIRE_NMAP=1."""
    path = shutil.which("nmap")
    if path is None:
        if os.environ.get("OBSERVATORY_REQUIRE_NMAP") == "1":
            pytest.fail("nmap is required (OBSERVATORY_REQUIRE_NMAP=1) but is not on PATH")
        pytest.skip("nmap is not installed (set OBSERVATORY_REQUIRE_NMAP=1 to fail instead)")
    return path


def assert_loopback(target: str) -> None:
    """Refuse, in the test itself, any target off loopback: this workplace allows no other."""
    net = ipaddress.ip_network(target, strict=False)
    assert net.is_loopback, f"tests may only scan 127.0.0.0/8 or ::1, not {target}"


def closed_port(
    family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, addr: str = "127.0.0.1"
) -> int:
    """A port nothing listens on right now (bound to 0 by the kernel, then released)."""
    with socket.socket(family, kind) as s:
        s.bind((addr, 0))
        port: int = s.getsockname()[1]
    return port


def nmap_states(ports: str, target: str = "127.0.0.1", flag: str = "-sT") -> dict[int, str]:
    """nmap run directly (``nmap -sT -oX - -Pn -n -p PORTS TARGET``): port -> state."""
    assert_loopback(target)
    argv = [require_nmap(), flag, "-oX", "-", "-Pn", "-n", "-p", ports]
    if ":" in target:
        argv.append("-6")
    out = subprocess.run(
        [*argv, target],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    states: dict[int, str] = {}
    for port in ET.fromstring(out).iter("port"):
        state = port.find("state")
        assert state is not None
        states[int(port.get("portid", "0"))] = state.get("state", "")
    return states


def nmap_processes_of(pid: int | None = None) -> list[psutil.Process]:
    """nmap processes that are children of this test, plus ``pid`` if it is still nmap.

    Zombies count: an unreaped nmap is one left behind too.
    """
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "nmap":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    if pid is not None:
        try:
            proc = psutil.Process(pid)
            if proc.name() == "nmap" and proc not in found:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found
