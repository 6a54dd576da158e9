"""End-to-end: the dashboard with the lecture's two lab hosts (scenarios/session4-hosts.toml),
in a real terminal, as root: each end of the experiment-10 pair on its own host with its
own address, the hosts' interfaces, and no namespace, process or route left after q,
SIGTERM and SIGHUP (the terminal closed). A blackhole route holds the lab range."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import _lab_namespaces
from tests.e2e.test_tmux import Launcher, dashboard  # noqa: F401 (the fixture)

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "session4-hosts.toml"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts (network namespaces) need root"),
    pytest.mark.timeout(90),
]


def lines_with(pane: str, *needles: str) -> list[str]:
    """The screen's lines holding every needle, in the order given (a row's cells)."""
    pattern = re.compile(".*".join(re.escape(n) for n in needles))
    return [line for line in pane.splitlines() if pattern.search(line)]


@pytest.mark.parametrize("how", ["q", "SIGTERM", "SIGHUP"])
def test_the_pair_across_two_hosts_and_nothing_left(
    blackhole: None,  # (first: it is torn down last, after the dashboard's clean-up)
    dashboard: Launcher,  # noqa: F811
    how: str,
) -> None:
    dash = dashboard("--scenario", str(SCENARIO), width=150, height=45)
    term, pid = dash.term, dash.proc.pid
    # Experiment 10: the ESTABLISHED pair, each end on its host with its own 10.0.2.x.
    term.wait_for(
        lambda p: bool(
            lines_with(p, "server", "10.0.2.15:6000", "10.0.2.16:", "tcp-server")
            and lines_with(p, "client", "10.0.2.16:", "10.0.2.15:6000", "tcp-client")
        ),
        timeout=20,
        what="the pair across the hosts",
    )
    pane = term.capture()
    assert lines_with(pane, "server", "10.0.2.100:7000", "tcp-server")  # experiment 9's
    assert "lab hosts up" in pane  # said in the dashboard (its stderr is hidden)
    assert {f"obs{pid}-sw", f"obs{pid}-server", f"obs{pid}-client"} <= _lab_namespaces()
    term.send_keys("i")  # the Interfaces tab: each host's own
    term.wait_for("10.0.2.15/24 10.0.2.100/24", what="the server host's interface")
    if how == "q":
        term.send_keys("q")
        term.wait_for("Quit the observatory?", what="the quit dialog")
        term.send_keys("Enter")
        term.wait_exit()
    elif how == "SIGTERM":
        dash.proc.send_signal(signal.SIGTERM)
        term.wait_exit()
    else:
        term.kill()  # the window closed: SIGHUP from the tty
    dash.tracker.assert_all_gone(timeout=10)
    assert not [n for n in _lab_namespaces() if n.startswith(f"obs{pid}-")]
