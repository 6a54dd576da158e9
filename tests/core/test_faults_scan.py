"""Faults of nmap (issue 16): killed in mid-scan by someone else, hanging and deaf to
SIGTERM. The scan ends, says what happened in one line, and leaves no nmap behind."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from app.core.scan import Scan, ScanRequest
from tests.conftest import listener, wait_for
from tests.nmaputil import nmap_processes_of, require_nmap

pytestmark = pytest.mark.timeout(60)


def test_nmap_killed_in_mid_scan_says_so(sockets: list[socket.socket]) -> None:
    """Someone SIGKILLs nmap (the OOM killer, a student's `kill -9`): the scan says so."""
    require_nmap()
    port = listener(sockets).getsockname()[1]  # silent: -sV waits on it for seconds
    scan_ = Scan(ScanRequest.create("127.0.0.1", str(port), "version"), timeout=30)
    scan_.start()
    wait_for(lambda: scan_.pid is not None and nmap_processes_of(scan_.pid), what="nmap")
    time.sleep(0.5)
    assert not scan_.done
    pid = scan_.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    result = scan_.wait(timeout=10)
    assert result is not None
    assert result.status == "failed" and not result.ok
    error = result.error or ""
    assert "killed by SIGKILL" in error and "\n" not in error, error
    assert "not by the observatory" in error, error
    assert result.ports == ()
    assert nmap_processes_of(pid) == []


def test_a_hanging_nmap_deaf_to_sigterm_is_killed_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for a hung binary (the workplace allows one for the hang only): it
    ignores SIGTERM and never ends. The timeout ends it with SIGKILL, and says so."""
    fake = tmp_path / "nmap"
    fake.write_text(
        '#!/bin/sh\ntrap \'\' TERM\necho $$ > "$(dirname "$0")/pid"\nwhile :; do sleep 0.1; done\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    scan_ = Scan(ScanRequest.create("127.0.0.1", "80", "connect"), timeout=1.0)
    started = time.monotonic()
    result = scan_.run()
    took = time.monotonic() - started
    assert result.status == "timeout", result
    assert result.error == "the scan took longer than 1 s and was stopped"
    assert took < 5, f"took {took:.1f} s"
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid), "the hung nmap was left"


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"
