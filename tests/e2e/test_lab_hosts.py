"""The lecture across two lab hosts (scenarios/session4-hosts.toml), as a teacher runs it:
`observatory lab up` as root, `observatory snapshot --host` from another terminal, and
nothing left after q-like ends (SIGINT), SIGTERM, SIGHUP; after SIGKILL, the next start
removes what was left and says so. Traffic stays in the namespaces: a blackhole route
holds the lab range in the machine's own namespace for each test."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AsNobody, _lab_namespaces, wait_for

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "session4-hosts.toml"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts (network namespaces) need root"),
    pytest.mark.timeout(60),
]


class LabUp:
    """`observatory lab up FILE` in the background, its output collected line by line."""

    def __init__(self, path: Path = SCENARIO) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "lab", "up", str(path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def end(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(15)


@pytest.fixture
def lab(blackhole: None) -> Iterator[LabUp]:
    up = LabUp()
    try:
        wait_for(lambda: up.saw("Connected 10.0.2.16:"), timeout=20, what="the client's connect")
        yield up
    finally:
        up.end(signal.SIGKILL)  # (the tests end it their own way first)
        from app.core import netns

        netns.sweep_stale()


def snapshot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "snapshot", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def connect_from(host: str, address: str, port: int) -> str:
    """What a connect() from lab host ``host`` to address:port gets, in its own words."""
    ns = next(n for n in _lab_namespaces() if re.fullmatch(rf"obs\d+-{host}", n))
    code = (
        "import socket,sys\ns=socket.socket();s.settimeout(3)\n"
        f"try:\n s.connect(({address!r},{port}));print('accepted')\n"
        "except OSError as e:\n print(e.strerror)\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return done.stdout.strip()


def test_experiment_10_each_end_has_its_own_address(lab: LabUp) -> None:
    server = json.loads(snapshot("--host", "server", "--json", "--established").stdout)
    client = json.loads(snapshot("--host", "client", "--json", "--established").stdout)
    assert [(s["local_addr"], s["local_port"], s["remote_addr"]) for s in server] == [
        ("10.0.2.15", 6000, "10.0.2.16")
    ]
    (mine,) = client
    assert (mine["local_addr"], mine["remote_addr"], mine["remote_port"]) == (
        "10.0.2.16",
        "10.0.2.15",
        6000,
    )
    assert server[0]["remote_port"] == mine["local_port"]  # one connection, seen from both ends
    assert {s["host"] for s in server} == {"server"} and mine["host"] == "client"
    assert mine["process"] == "tcp-client" and server[0]["process"] == "tcp-server"
    # The machine's own namespace has none of it.
    own = json.loads(snapshot("--json", "--all").stdout)
    assert not [s for s in own if s["local_addr"].startswith("10.0.2.")]
    assert all("host" not in s for s in own)


def test_experiment_9_a_server_bound_to_one_address(lab: LabUp) -> None:
    listen = json.loads(snapshot("--host", "server", "--json", "--listen").stdout)
    assert {(s["local_addr"], s["local_port"]) for s in listen} >= {
        ("0.0.0.0", 6000),
        ("10.0.2.100", 7000),
    }
    assert connect_from("client", "10.0.2.100", 7000) == "accepted"
    assert connect_from("client", "10.0.2.15", 7000) == "Connection refused"
    assert connect_from("client", "10.0.2.100", 6000) == "accepted"  # INADDR_ANY: every address


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_nothing_is_left_after_a_stop(lab: LabUp, sig: int) -> None:
    pid = lab.proc.pid
    assert {f"obs{pid}-sw", f"obs{pid}-server", f"obs{pid}-client"} <= _lab_namespaces()
    lab.end(sig)
    assert not [n for n in _lab_namespaces() if n.startswith(f"obs{pid}-")]
    assert lab.saw("[server1] stopped by SIGTERM")  # the processes went first


def test_after_sigkill_the_next_start_cleans_up_and_says_so(lab: LabUp) -> None:
    pid = lab.proc.pid
    lab.end(signal.SIGKILL)
    # The children go with it (their parent guard); the namespaces stay until the next start.
    assert f"obs{pid}-sw" in _lab_namespaces()
    again = LabUp()
    try:
        wait_for(lambda: again.saw("lab hosts up"), timeout=20, what="the second start")
        assert again.saw(f"(pid {pid})") and again.saw("Removed the lab network")
        assert not [n for n in _lab_namespaces() if n.startswith(f"obs{pid}-")]
    finally:
        again.end(signal.SIGTERM)


def test_the_stream_joins_a_host_s_sockets_with_the_tracepoint(lab: LabUp) -> None:
    """The tracepoint (one for the machine) names no host: a lab host's TIME_WAIT, which
    only the samples see, still says the state the tracepoint saw it leave."""
    from app.core import netns
    from app.core.sockets import DiagSource, LabSource, default_source
    from app.core.watch import EventStream

    hosts = [
        netns.in_namespace(netns.find_namespaces(h)[0], functools.partial(DiagSource, host=h))
        for h in ("server", "client")
    ]
    # Samples far apart: the one before the kill saw ESTABLISHED, the next TIME_WAIT.
    with EventStream([6000], interval=2.0, source=LabSource(default_source(), hosts)) as stream:
        if stream.mode != "tracepoint":
            pytest.skip(f"no tracepoint here: {stream.seeing}")
        stream.read(0)  # the baseline
        server = json.loads(snapshot("--host", "server", "--json", "--listen").stdout)
        os.kill(next(s["pid"] for s in server if s["local_port"] == 6000), signal.SIGTERM)
        seen: list[str] = []

        def time_wait() -> bool:
            seen.extend(e.text for e in stream.read(0.3))
            return any("-> TIME_WAIT 10.0.2.15:6000" in t for t in seen)

        wait_for(time_wait, timeout=15, what="the server end's TIME_WAIT")
    assert any("FIN_WAIT2 -> TIME_WAIT 10.0.2.15:6000" in t for t in seen), seen


def test_a_bad_host_table_creates_nothing(blackhole: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[host]]\nname = "server"\naddress = "10.0.2.15"\n\n'
        '[[process]]\nname = "s"\nhost = "nosuch"\nprogram = "tcp-server"\nargs = ["6000"]\n'
    )
    before = _lab_namespaces()
    up = LabUp(bad)
    assert up.proc.wait(15) == 2
    wait_for(lambda: up.saw("nothing was started"), timeout=5, what="the refusal")
    assert up.saw('key "address": "10.0.2.15" has no prefix') and up.saw("no [[host]] named")
    assert _lab_namespaces() == before


def test_without_root_lab_up_is_refused_in_words(as_nobody: AsNobody) -> None:
    # A copy nobody may read (the clone may sit in a folder only root can enter).
    public = Path(tempfile.mkdtemp(prefix="observatory-hosts-"))
    try:
        public.chmod(0o755)
        scenario = public / SCENARIO.name
        shutil.copy(SCENARIO, scenario)
        scenario.chmod(0o644)
        done = as_nobody("lab", "up", str(scenario))
    finally:
        shutil.rmtree(public)
    assert done.returncode == 2, done.stderr
    assert "Lab hosts need root" in done.stderr and "Traceback" not in done.stderr
    assert "sudo" in done.stderr  # what to do
