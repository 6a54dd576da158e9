"""The lab programs when the kernel ends their connection from outside (SOCK_DESTROY, root).

Their blocked recv() gets ECONNABORTED; they say "connection aborted by the
kernel", where a reset or a close by the peer reads differently.
"""

from __future__ import annotations

import os
import re

import pytest

from app.core.diag import destroy
from tests.conftest import free_port
from tests.labs.procs import LabProcess, Labs

pytestmark = pytest.mark.timeout(30)

CONNECTED = re.compile(r"^Connected 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)$")
CLIENT_LINE = (
    "Connection aborted by the kernel "
    "(closed from outside this program, as observatory close or ss -K do)"
)


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("SOCK_DESTROY needs root")


def client_port(lab: Labs, port: int, *extra: str) -> tuple[LabProcess, int]:
    client = lab.start("tcp-client", "127.0.0.1", "hola", str(port), *extra)
    match = CONNECTED.match(client.expect("Connected"))
    assert match and int(match.group(2)) == port
    client.expect("Holding the connection")
    return client, int(match.group(1))


@pytest.mark.parametrize("handler", ["hold", "busy"])
def test_server_says_aborted_and_accepts_the_next_client(lab: Labs, handler: str) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port), "--handler", handler)
    first, first_port = client_port(lab, port)
    assert server.expect("Client:") == f"Client: 127.0.0.1:{first_port}"
    _second, second_port = client_port(lab, port)  # waits in the backlog

    destroy(("127.0.0.1", port), ("127.0.0.1", first_port))  # the server's end
    assert server.expect("Client gone:") == (
        f"Client gone: 127.0.0.1:{first_port} (connection aborted by the kernel)"
    )
    assert server.expect("Client:") == f"Client: 127.0.0.1:{second_port}"
    assert first.expect("Server closed") == "Server closed the connection (reset)"
    assert first.wait() == 0


@pytest.mark.parametrize("extra", [(), ("--busy",)], ids=["blocked", "busy"])
def test_client_says_aborted_and_exits_0(lab: Labs, extra: tuple[str, ...]) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port))
    client, cport = client_port(lab, port, *extra)
    server.expect("Client:")

    destroy(("127.0.0.1", cport), ("127.0.0.1", port))  # the client's end
    assert client.expect("Connection aborted") == CLIENT_LINE
    assert client.wait() == 0
    assert client.stderr_text() == ""
    # The server was reset by the kernel's RST: an ordinary leave, not an abort of its own.
    assert server.expect("Client gone:") == f"Client gone: 127.0.0.1:{cport}"


def test_a_connection_destroyed_in_the_backlog_is_still_accepted_then_aborted(lab: Labs) -> None:
    port = free_port()
    server = lab.server("tcp-server", str(port))
    first, _first_port = client_port(lab, port)
    server.expect("Client:")
    waiting, waiting_port = client_port(lab, port)  # not accepted: the kernel holds it

    destroy(("127.0.0.1", port), ("127.0.0.1", waiting_port))
    assert waiting.expect("Server closed") == "Server closed the connection (reset)"
    first.kill()  # the iterative server now takes what is left in its backlog
    assert server.expect("Client gone:")
    assert server.expect("Client:") == f"Client: 127.0.0.1:{waiting_port}"
    assert server.expect("Client gone:") == (
        f"Client gone: 127.0.0.1:{waiting_port} (connection aborted by the kernel)"
    )
