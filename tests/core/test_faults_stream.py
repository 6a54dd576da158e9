"""Faults of the kernel sources mid-run (issue 16, point 2): the netlink socket of the
socket table breaks, the tracing instance is switched off by another program. The polls
go on, and what changed is said in words."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from app.core import diag
from app.core.model import Snapshot
from app.core.sockets import DiagSource
from app.core.watch import EventStream, WatchEvent
from app.ui.messages import PollResult
from app.ui.poller import Poller
from tests.conftest import connect, listener, wait_for

pytestmark = pytest.mark.timeout(30)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the tracepoint needs root")


def test_a_broken_netlink_socket_is_opened_again(sockets: list[socket.socket]) -> None:
    port = listener(sockets).getsockname()[1]
    source = DiagSource()
    assert any(s.local_port == port for s in source.poll().sockets)
    source._sock.close()  # the fault: the socket table's netlink socket is gone mid-run
    snap = source.poll()
    assert source.reopened == 1
    assert any(s.local_port == port for s in snap.sockets)
    source.close()


def test_a_lab_host_s_broken_netlink_socket_is_said_in_words() -> None:
    source = DiagSource(host="srv")  # (opened here; a lab host's is opened in its namespace)
    source._sock.close()
    with pytest.raises(diag.DiagUnavailable) as info:
        source.poll()
    assert str(info.value) == (
        "the sockets of lab host srv cannot be read now (netlink sock_diag: Bad file descriptor)"
    )


def test_the_poller_goes_on_after_a_failed_poll_and_says_why(
    sockets: list[socket.socket],
) -> None:
    source = DiagSource(host="srv")
    broken = threading.Event()
    real_poll = source.poll

    def poll() -> Snapshot:
        if broken.is_set():
            broken.clear()
            source._sock.close()  # this poll meets the broken socket
        return real_poll()

    source.poll = poll  # type: ignore[method-assign]
    results: list[PollResult] = []
    failed: list[str] = []
    poller = Poller(source, results.append, 0.1, fail=failed.append)
    poller.start()
    try:
        wait_for(lambda: results, what="a first poll")
        poller.consumed()
        broken.set()
        wait_for(lambda: failed, what="the failure")
        assert failed[0].startswith("reading sockets failed: the sockets of lab host srv")
    finally:
        poller.stop()


@ROOT_ONLY
def test_a_tracing_instance_switched_off_falls_back_to_closes(
    sockets: list[socket.socket],
) -> None:
    server = listener(sockets)
    port = server.getsockname()[1]
    stream = EventStream(ports=[port], interval=0.2)
    stream.start()
    try:
        assert stream.mode == "tracepoint"
        assert stream._tracer is not None
        instance = stream._tracer.instance
        assert instance is not None
        stream.read(0.1)  # the baseline
        Path(instance, "tracing_on").write_text("0\n")  # the fault: another program
        time.sleep(2.1)  # the instance is looked at every 2 s
        stream.read(0.3)
        assert str(stream.mode) == "destroy", stream.seeing
        assert stream.seeing.endswith(
            "and every close — another program switched off the tracing instance (tracing_on is 0)"
        ), stream.seeing
        assert not os.path.exists(instance)  # ours, and no longer used: removed
        client = connect(sockets, server)
        accepted, _ = server.accept()
        client_port = client.getsockname()[1]
        time.sleep(0.3)
        stream.read(0.3)
        client.close()
        accepted.close()
        events: list[WatchEvent] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(e.source == "destroy" for e in events):
            events += stream.read(0.3)
        closes = [
            e
            for e in events
            if e.source == "destroy" and client_port in (e.local_port, e.remote_port)
        ]
        assert closes, events
    finally:
        stream.close()


@ROOT_ONLY
def test_the_poller_says_when_the_events_change(sockets: list[socket.socket]) -> None:
    results: list[PollResult] = []
    warned: list[str] = []

    def deliver(result: PollResult) -> None:
        results.append(result)
        poller.consumed()

    poller = Poller(DiagSource(), deliver, 0.2, stream=EventStream, warn=warned.append)
    poller.start()
    try:
        wait_for(lambda: poller.stream is not None and results, what="the stream")
        stream = poller.stream
        assert stream is not None and stream._tracer is not None
        instance = stream._tracer.instance
        assert instance is not None
        Path(instance, "tracing_on").write_text("0\n")
        wait_for(lambda: warned, timeout=5, what="the warning")
        assert warned[0].startswith("The events changed: sampled every 0.2 s, and every close")
        assert "switched off the tracing instance" in warned[0]
        count = len(results)
        wait_for(lambda: len(results) > count + 2, what="polls after it")
        assert results[-1].seeing == stream.seeing
    finally:
        poller.stop()
