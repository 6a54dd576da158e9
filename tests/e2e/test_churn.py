"""Churn (issue 16): at least 500 short connections a second for 20 s against a real lab
server (`tcp-server --concurrent`), while the real dashboard (Pilot) polls every 0.25 s
with its event stream. No exception; the test process's RSS (the app runs in it) back
within a margin after; every connection that lived longer than two polls is among the
poll's events, and as root (the tracepoint) every connection is among the transitions."""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from app.core.procs import ProcessManager
from app.core.sockets import default_source
from app.core.watch import EventStream
from app.ui.app import ObservatoryApp
from app.ui.messages import PollResult
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.timeout(90)

SECONDS = 20.0
RATE = 500  # connections a second, at least
INTERVAL = 0.25
LONG_EVERY = 100  # one connection in this many lives longer than two polls
LONG_FOR = 6 * INTERVAL  # (a poll under this load may take up to a second)
MB = 1024 * 1024


@dataclass
class Seen:
    polls: int = 0
    tracepoint: bool = False
    sampled: set[int] = field(default_factory=set)  # client ports of sampled new connections
    # ... of SYN_SENT -> ESTABLISHED lines, counted (a client port is reused in 20 s)
    connected: Counter[int] = field(default_factory=Counter)


# The client loop runs in a process of its own: in a thread of the test process it got
# the interpreter's lock too rarely beside the app (14 connections a second).
CHURN = """
import json, socket, struct, sys, time
port, rate, seconds, long_every, long_for = (float(a) for a in sys.argv[1:6])
linger = struct.pack("ii", 1, 0)
ports, long_ports, held = [], [], []
started = time.monotonic()
n = 0
while time.monotonic() - started < seconds:
    due = started + n / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.connect(("127.0.0.1", int(port)))
    ports.append(s.getsockname()[1])
    last = time.monotonic()
    n += 1
    if n % int(long_every) == 0:
        long_ports.append(ports[-1])
        held.append((time.monotonic() + long_for, s))
    else:
        s.close()
    while held and held[0][0] <= time.monotonic():
        held.pop(0)[1].close()
for until, s in held:  # each lives its time, the last ones too
    time.sleep(max(0.0, until - time.monotonic()))
    s.close()
took = len(ports) and (last - started)
with open(sys.argv[6], "w") as out:  # a file: 80 KB would fill a pipe nobody reads yet
    json.dump({"ports": ports, "long": long_ports, "took": took}, out)
"""


def churn(port: int, out: Path) -> subprocess.Popen[str]:
    """connect()/close() at RATE * 1.2 a second for SECONDS; most close with a reset (no
    TIME_WAIT left: the table returns to its size), one in LONG_EVERY lives LONG_FOR s."""
    args = [port, RATE * 1.2, SECONDS, LONG_EVERY, LONG_FOR, out]
    return subprocess.Popen([sys.executable, "-c", CHURN, *map(str, args)], text=True)


async def test_500_connections_a_second_for_20_s(tmp_path: Path) -> None:
    me = psutil.Process()
    port = free_port()
    seen = Seen()
    manager = ProcessManager(register_atexit=False)
    app = ObservatoryApp(
        default_source(),
        manager,
        interval=INTERVAL,
        stream=functools.partial(EventStream, udp=True),
    )
    failures: list[str] = []
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            deliver = app.poller.deliver

            def keep(result: PollResult) -> object:
                # What the screen gets, noted on the way: only the ports (keeping the
                # results would be the test's own memory growth).
                seen.polls += 1
                seen.tracepoint = seen.tracepoint or "tracepoint" in (result.seeing or "")
                seen.sampled.update(
                    e.socket.local_port
                    for e in result.events
                    if e.kind == "connection-opened" and e.socket.remote_port == port
                )
                seen.connected.update(
                    t.local_port
                    for t in result.transitions
                    if t.remote_port == port
                    and (t.old_state, t.new_state) == ("SYN_SENT", "ESTABLISHED")
                )
                return deliver(result)

            app.poller.deliver = keep
            app.poller.fail = lambda error: failures.append(error)
            manager.launch_builtin(
                "churned", "tcp-server", [str(port), "--concurrent", "--backlog", "512"]
            )
            wait_for(lambda: any("Listening" in ln for ln in manager.output("churned")))
            await pilot.pause(2.0)
            gc.collect()
            before = me.memory_info().rss
            client = churn(port, tmp_path / "churn.json")
            t0 = time.monotonic()
            peak = before
            mid = 0
            while client.poll() is None:
                await pilot.pause(0.5)
                peak = max(peak, me.memory_info().rss)
                if not mid and time.monotonic() - t0 >= SECONDS / 2:
                    mid = me.memory_info().rss
            done = json.loads((tmp_path / "churn.json").read_text())
            ports, long_ports, took = done["ports"], done["long"], done["took"]
            rate = len(ports) / took
            await pilot.pause(3.0)  # the last polls, the last transitions
            await pilot.press("p")  # the dashboard still answers keys
            await pilot.pause(0.5)
            gc.collect()
            after = me.memory_info().rss
            state = manager.get("churned").state
            polls = seen.polls
    finally:
        manager.shutdown()
    print(
        f"churn: {len(ports)} connections in {took:.1f} s ({rate:.0f}/s), {polls} polls; "
        f"RSS before {before / MB:.1f} MB, mid {mid / MB:.1f}, peak {peak / MB:.1f}, "
        f"after {after / MB:.1f}"
    )
    assert rate >= RATE, f"only {rate:.0f} connections a second"
    assert not failures, failures[:3]
    assert state == "running"  # the server too took it all
    assert polls >= took / INTERVAL * 0.5, f"{polls} polls in {took:.1f} s"
    assert after - before < 40 * MB, f"RSS grew by {(after - before) / MB:.1f} MB"
    # Every connection that lived longer than two polls: a sampled event of its own.
    missed = [p for p in long_ports if p not in seen.sampled]
    assert not missed, f"{len(missed)} of {len(long_ports)} long connections not seen"
    if os.geteuid() == 0 and seen.tracepoint:
        made = Counter(ports)
        lost = sum((made - seen.connected).values())
        print(f"tracepoint: {seen.connected.total()} connects seen of {len(ports)}")
        assert lost == 0, f"{lost} of {len(ports)} connections not among the transitions"
