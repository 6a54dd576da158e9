"""End-to-end at 16,000 sockets: the real dashboard in tmux, 8,000 pairs held by another process.

The pairs live on 127.0.0.7 (listener and clients both bound there) so that a
filter names them and nothing else the machine runs; every port of theirs has
five digits (the ephemeral range), so ``127.0.0.7:PORT`` matches one endpoint.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e.test_tmux import Launcher, dashboard  # noqa: F401  (the fixture)
from tests.e2e.tmuxutil import box_rows

pytestmark = pytest.mark.timeout(120)

PAIRS = 8000
ADDR = "127.0.0.7"
HOLDER = r"""
import resource, socket, struct, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
addr = sys.argv[2]
srv = socket.socket(); srv.bind((addr, 0)); srv.listen(4096)
held, ports = [], []
for _ in range(int(sys.argv[1])):
    c = socket.socket(); c.bind((addr, 0)); c.connect(srv.getsockname())
    a, _ = srv.accept(); held += [c, a]; ports.append(c.getsockname()[1])
print(srv.getsockname()[1], *ports, flush=True)
sys.stdin.read()
for s in held:  # RST: no TIME_WAIT left behind for the next run
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
"""
TITLE = re.compile(
    r"ESTABLISHED  \(like ss -n state established\) · (\d+)"
    r"(?: \(\+\d+ gone\))?(?: · (\d+) shown)?"
)


@pytest.fixture
def pairs() -> Iterator[tuple[int, list[int]]]:
    """Another process holding PAIRS connections on ADDR: (listener port, client ports)."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2 * PAIRS + 100:
        pytest.skip(f"needs {2 * PAIRS + 100} file descriptors (ulimit -Hn)")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(PAIRS), ADDR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        listener, *clients = map(int, holder.stdout.readline().split())
        yield listener, clients
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)


def shown(pane: str) -> int | None:
    """How many rows the ESTABLISHED table shows, from its title."""
    match = TITLE.search(pane)
    if match is None:
        return None
    return int(match.group(2) or match.group(1))


def established(pane: str) -> list[str]:
    """The rows of the ESTABLISHED table on screen, words single-spaced, header left out.

    Its border is heavy (┏ ┃) while focused in the projector theme: read as a round one.
    """
    plain = pane.translate(str.maketrans("┏┓┗┛┃━", "╭╮╰╯│─"))
    rows = [" ".join(r.split()) for r in box_rows(plain, "ESTABLISHED") or [] if r.strip()]
    return rows[1:]


def test_end_reaches_the_last_of_16000_rows_a_filter_finds_one_pair_q_quits(
    dashboard: Launcher,  # noqa: F811  (the fixture, imported above)
    pairs: tuple[int, list[int]],
) -> None:
    listener, clients = pairs
    dash = dashboard("--interval", "1", "--theme", "projector")  # a focused table: ┏━━
    term = dash.term
    term.wait_for(
        lambda pane: (shown(pane) or 0) >= 2 * PAIRS,
        timeout=30,
        what=f"{2 * PAIRS} connections in the ESTABLISHED title",
    )

    # Only the holder's connections, then the last of them. The natural order puts
    # a connection's two ends together by the pair of endpoints, the server's end
    # first: the last row is the client end of the pair that sorts last.
    dash.filter_rows(ADDR)
    term.wait_for(
        lambda pane: shown(pane) == 2 * PAIRS, timeout=15, what=f"{2 * PAIRS} rows shown for {ADDR}"
    )
    term.wait_for("┏━ LISTEN", what="the focus back on LISTEN after Enter in the filter")
    term.send_keys("Tab")  # ESTABLISHED is next
    term.wait_for("┏━ ESTABLISHED", what="the ESTABLISHED table focused (a heavy border)")
    term.send_keys("End")
    last = max(clients, key=lambda c: (min(c, listener), max(c, listener)))
    want = f"tcp {ADDR}:{last} {ADDR}:{listener}"
    # At the bottom, and the cursor's: the line under the tables says that row in words.
    term.wait_for(
        lambda pane: (
            (rows := established(pane)) != []
            and rows[-1].startswith(want)
            and f"{ADDR}:{last} ESTABLISHED" in pane
        ),
        timeout=10,
        what=f"the last row {want!r} at the bottom after End, selected",
    )

    # One client's port among 16,000: just its pair, the server's end first.
    client = clients[len(clients) // 2]
    term.send_keys("/", "Escape")  # back in the filter box: Esc empties and hides it
    term.wait_for(lambda pane: "filter:" not in pane.splitlines()[0], what="no filter")
    dash.filter_rows(f"{ADDR}:{client}")
    term.wait_for(
        lambda pane: shown(pane) == 2, timeout=10, what=f"2 rows shown for {ADDR}:{client}"
    )
    term.wait_for(
        lambda pane: (
            established(pane)
            == [
                f"tcp {ADDR}:{listener} {ADDR}:{client} {pane_owner(pane)}",
                f"tcp {ADDR}:{client} {ADDR}:{listener} {pane_owner(pane)}",
            ]
        ),
        timeout=10,
        what="exactly the pair: server end, then client end",
    )

    term.wait_for("┏━ LISTEN", what="the focus back on LISTEN (q typed in the box is text)")
    started = time.monotonic()
    term.send_keys("q")
    assert term.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 3.0, "q took 3 s or more at 16,000 sockets"
    dash.tracker.assert_all_gone(timeout=5)


def pane_owner(pane: str) -> str:
    """The holder's PID/Program as the rows show it (``1234/python``)."""
    match = re.search(rf"{re.escape(ADDR)}:\d+ +{re.escape(ADDR)}:\d+ +(\d+/\S+)", pane)
    return match.group(1) if match else "?"
