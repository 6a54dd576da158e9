"""Processes and sockets that vanish between two reads (issue 16, point 2): while
processes that each hold a listener start and end as fast as they can, every poll of both
socket sources answers, and every owner it names is a pid, hidden or the kernel's."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from app.core.sockets import DiagSource, ProcNetSource, _OwnedSource

pytestmark = pytest.mark.timeout(60)

# Opens a listener, forks a child that holds it too, and both end within milliseconds.
SHORT = (
    "import os, socket, time\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
    "pid = os.fork()\ntime.sleep(0.002)\nos._exit(0)\n"
)


@pytest.mark.parametrize("source_cls", [DiagSource, ProcNetSource])
def test_polls_answer_while_owners_vanish(source_cls: type[_OwnedSource]) -> None:
    stop = threading.Event()
    spawned = [0]

    def spawn() -> None:
        while not stop.is_set():
            procs = [subprocess.Popen([sys.executable, "-c", SHORT]) for _ in range(8)]
            for proc in procs:
                proc.wait()
            spawned[0] += len(procs)

    threads = [threading.Thread(target=spawn) for _ in range(2)]
    for thread in threads:
        thread.start()
    source = source_cls(rescan_every=0.05)  # the fd walk runs nearly every poll
    polls = 0
    owned = 0  # (rows with a pid, for the print)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            snap = source.poll()
            polls += 1
            for sock in snap.sockets:  # an owner that vanished is no half-read row
                assert (sock.pid is not None) == (sock.owner == "process"), sock
                owned += sock.pid is not None
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    print(
        f"{source_cls.__name__}: {polls} polls while {spawned[0]} processes came and went "
        f"({owned} rows with a pid)"
    )
    assert polls >= 10 and spawned[0] >= 16, (polls, spawned)
