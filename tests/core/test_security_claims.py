"""Issue 16, point 6: the README's Security section, claim by claim, where no other test
says it already (the others are named in the section's own list of tests).

- scan input cannot become an nmap option: the CLI refuses a target or a port list that
  looks like one before nmap is started (a stand-in ``nmap`` first on PATH records every
  start: none), and the argv nmap gets is the fixed options, the canonical ports, ``--``
  and the canonical target, word for word, with no shell between;
- ``build_command`` itself refuses a target or ports that slipped past validation;
- ``observatory serve`` on another host than loopback warns who can then reach it.

(The dashboard listening on no port is checked in tests/e2e/test_unprivileged.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.scan import ScanRequest, build_command
from app.core.targets import PortsError, Target, TargetError
from tests.conftest import REPO, free_port, observatory

TRIPWIRE = """#!/bin/sh
# Not nmap: writes the words it was started with, one a line, and fails.
printf '%s\\n' "$@" >> "{record}"
exit 3
"""


@pytest.fixture
def tripwire(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH finds a stand-in ``nmap`` first, and the file where it
    writes its argv each time it is started."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "nmap-started"
    fake = bin_dir / "nmap"
    fake.write_text(TRIPWIRE.format(record=record), encoding="ascii")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return env, record


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--", "-oN/tmp/observatory-injected"], "a target cannot start with '-'"),
        (["127.0.0.1 -oN /tmp/observatory-injected"], "one target at a time, without spaces"),
        (["$(touch /tmp/observatory-injected)"], "one target at a time, without spaces"),
        (["`touch${IFS}observatory-injected`"], "is not an IP address"),
        (["127.0.0.1", "-p", "22 -oN /tmp/observatory-injected"], "ports are numbers"),
        (["127.0.0.1", "-p", "22;touch /tmp/observatory-injected"], "ports are numbers"),
    ],
)
def test_option_like_scan_input_is_refused_before_nmap_starts(
    tripwire: tuple[dict[str, str], Path], tmp_path: Path, args: list[str], words: str
) -> None:
    env, record = tripwire
    done = observatory("scan", *args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("observatory scan: ") and words in done.stderr, done.stderr
    assert not record.exists(), "nmap was started"
    assert not Path("/tmp/observatory-injected").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]  # nothing written where it ran


def test_nmap_gets_fixed_options_and_canonical_fields_word_for_word(
    tripwire: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """The same stand-in, for an accepted scan: it is started (the test above could fail),
    with exactly build_command's words after argv[0]: no shell split or joined them."""
    env, record = tripwire
    done = observatory("scan", "127.0.0.1", "-p", " 6000-6002, 22 ", env=env, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr  # the stand-in failed
    expected = build_command(ScanRequest.create("127.0.0.1", "22,6000-6002"))
    assert record.read_text(encoding="ascii").splitlines() == list(expected[1:])
    assert expected[-4:] == ("-p", "22,6000-6002", "--", "127.0.0.1")


def test_build_command_refuses_what_slipped_past_validation() -> None:
    """A Target or port list made without parse_target/parse_ports (a future bug) still
    cannot become an option: build_command checks again."""
    good = ScanRequest.create("127.0.0.1", "22")
    for text in ("-oN/tmp/x", "127.0.0.1 -oN /tmp/x", "127.0.0.1\t-iL"):
        forged = ScanRequest(Target(text, "hostname", None, 1), "22")
        with pytest.raises(TargetError):
            build_command(forged)
    with pytest.raises(PortsError):
        build_command(ScanRequest(good.target, "22 -oN /tmp/x"))
    assert build_command(good)[-2:] == ("--", "127.0.0.1")


def test_serve_on_another_host_warns_who_can_reach_it() -> None:
    """In a network namespace of its own (gone with the process), with a documentation
    address on a veth link inside it: serve says, before serving, that others can reach it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "needs root, unshare and ip for a network namespace of the test's own"
        )
    port = free_port()
    script = (
        "set -e; ip link set lo up; ip link add sec16a type veth peer name sec16b;"
        " ip addr add 192.0.2.16/24 dev sec16a; ip link set sec16a up;"
        f' exec "$0" -m app serve --host 192.0.2.16 --port {port}'
    )
    proc = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", script, sys.executable],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        warning = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert warning == (
        "observatory serve: warning: listening on 192.0.2.16, not only on this machine: "
        f"anyone who can reach port {port} can start and kill processes as root\n"
    )
