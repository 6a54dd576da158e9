"""udp-client --hold: its socket stays open long enough to be seen (experiment 13)."""

from __future__ import annotations

import re
import socket

import pytest

from app.labs.udp_client import build_parser
from tests.conftest import free_port, observatory, wait_for
from tests.labs.procs import Labs

pytestmark = pytest.mark.timeout(30)


def test_help_says_what_hold_is_for() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "--hold SECONDS keep the socket open SECONDS after sending (and after any reply)" in text
    assert "`observatory snapshot --udp`" in text


def test_a_held_client_socket_is_in_the_snapshot(lab: Labs) -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    lab.server("udp-server", str(port))
    client = lab.start("udp-client", "127.0.0.1", "hola", str(port), "--hold", "10")
    sent = client.expect("Sent to")
    match = re.search(r"from 127\.0\.0\.1:(\d+)|from 0\.0\.0\.0:(\d+)", sent)
    assert client.expect("Reply from") == f"Reply from 127.0.0.1:{port}: hola"
    assert client.expect("Holding") == "Holding the socket for 10 s"
    assert match is not None
    local = int(match.group(1) or match.group(2))

    def shown() -> bool:
        done = observatory("snapshot", "--udp", "--port", str(local))
        return done.returncode == 0 and any(
            line.split()[0] == "udp"
            and line.split()[3].endswith(f":{local}")
            and "udp-client" in line
            for line in done.stdout.splitlines()[1:]
            if line.strip()
        )

    wait_for(shown, timeout=5, what="the held udp-client socket in `observatory snapshot --udp`")
    assert client.proc.poll() is None  # still holding


def test_hold_is_validated() -> None:
    from app.labs import LabUsageError, validate

    for bad in ("-1", "nan", "inf", "٥", "soon"):
        with pytest.raises(LabUsageError, match="--hold must be a number of seconds, 0 or more"):
            validate("udp-client", ["127.0.0.1", "hi", "6000", "--hold", bad])
