"""Replay: a real recorded session (real sockets, real lab processes, the real poller and
recorder) rebuilt into frames, and played with pause, steps and speed."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.model import Snapshot
from app.core.procs import OutputLine, ProcessEvent, ProcessManager, ProcessStarted
from app.core.record import FORMAT_VERSION, RecordError, SessionRecorder, read_session
from app.core.replay import ReplayError, Timeline, frame_lines, latest_record, load
from app.core.replay_source import SPEEDS, ReplaySource
from app.core.sockets import default_source
from app.core.terminal_text import printable
from app.ui.messages import PollResult
from app.ui.poller import Poller
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.timeout(60)


@dataclass
class Session:
    """A recorded session and what the poller really saw while it was recorded."""

    path: Path
    polls: list[Snapshot]
    port: int  # the lab server's
    before: int  # a listener opened before the recording started (not a lab one)


def _record_process(recorder: SessionRecorder, event: ProcessEvent) -> None:
    # As the dashboard records them (ObservatoryApp._on_process_event).
    if not isinstance(event, OutputLine):
        data = {k: getattr(event, k) for k in event.__dataclass_fields__}
        kind = "started" if isinstance(event, ProcessStarted) else "exited"
        recorder.record_process(data, kind=kind)


def _listening(snap: Snapshot, port: int) -> bool:
    return any(s.state == "LISTEN" and s.local_port == port for s in snap.sockets)


def _connected(snap: Snapshot, port: int) -> bool:
    return any(s.state == "ESTABLISHED" and s.remote_port == port for s in snap.sockets)


def _time_wait(snap: Snapshot, port: int) -> bool:
    return any(
        s.state == "TIME_WAIT" and port in (s.local_port, s.remote_port) for s in snap.sockets
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """A server, a client that connects, leaves (TIME_WAIT) and the server killed:
    polled every 0.05 s by the real poller, snapshots every 0.3 s at most."""
    folder = tmp_path_factory.mktemp("sessions")
    before = socket.socket()
    before.bind(("127.0.0.1", 0))
    before.listen()
    port = free_port()
    manager = ProcessManager(register_atexit=False)
    recorder = SessionRecorder.start(folder)
    recorder.snapshot_every = 0.3
    recorder.snapshot_budget = 1e9  # (a full machine's snapshot would space them out)
    unsubscribe = manager.subscribe(lambda e: _record_process(recorder, e))
    polls: list[Snapshot] = []
    seen = threading.Condition()
    poller: Poller

    def deliver(result: PollResult) -> None:
        with seen:
            polls.append(result.snapshot)
            seen.notify_all()
        poller.consumed()

    poller = Poller(
        default_source(),
        deliver,
        0.05,
        processes=manager.processes,
        record=recorder.record_events,
        record_snapshot=recorder.record_snapshot,
    )

    def until(test: object, what: str) -> None:
        def found() -> bool:
            with seen:
                return bool(polls) and bool(test(polls[-1]))  # type: ignore[operator]

        wait_for(found, timeout=10, what=what)

    try:
        poller.start()
        until(lambda s: True, "the first poll")
        manager.launch_builtin("server", "tcp-server", [str(port)])
        until(lambda s: _listening(s, port), "the server's LISTEN")
        manager.launch_builtin(
            "client", "tcp-client", ["127.0.0.1", "hello", str(port), "--hold", "0.5"]
        )
        until(lambda s: _connected(s, port), "the connection")
        until(lambda s: _time_wait(s, port) and not _connected(s, port), "the TIME_WAIT")
        manager.kill("server")
        until(lambda s: not _listening(s, port), "the LISTEN gone")
        time.sleep(0.4)  # one more snapshot is due: the end as a snapshot too
        until(lambda s: True, "a last poll")
    finally:
        poller.stop()
        unsubscribe()
        manager.shutdown()
        recorder.close()
        before_port = before.getsockname()[1]
        before.close()
    with seen:
        taken = list(polls)
    yield Session(recorder.path, taken, port, before_port)


def _at_or_before(timeline: Timeline, at: float) -> int:
    """The frame whose tables were shown at ``at``: the last one recorded at or before it."""
    index = 0
    for i, frame in enumerate(timeline.frames):
        if frame.at <= at + 1e-5:
            index = i
    return index


def _rows(snap: Snapshot) -> dict[str, tuple[str, int | None, str]]:
    return {key: (s.state, s.pid, s.owner) for key, s in snap.by_key.items()}


def test_the_record_has_snapshots_and_events(session: Session) -> None:
    log = read_session(session.path)
    assert log.entries[0]["format"] == FORMAT_VERSION == 2
    types = [e["type"] for e in log.entries]
    assert types[1] == "snapshot"  # the first poll, always
    assert types.count("snapshot") >= 3 and "socket" in types and "process" in types
    snapshots = [e for e in log.entries if e["type"] == "snapshot"]
    gaps = [
        b["taken_at"] - a["taken_at"] for a, b in zip(snapshots[:-1], snapshots[1:], strict=True)
    ]
    assert min(gaps) >= 0.3 - 1e-6  # rate-limited by the polls' own time
    assert len(snapshots) < len(session.polls)


def test_the_tables_at_each_snapshot_are_the_snapshot_polled(session: Session) -> None:
    timeline = load(session.path)
    assert timeline.snapshots >= 3 and not timeline.notes  # a format 2 record, whole
    by_time = {round(p.taken_at, 6): p for p in session.polls}
    checked = 0
    for entry in read_session(session.path).entries:
        if entry["type"] != "snapshot":
            continue
        live = by_time[entry["taken_at"]]
        shown = timeline.snapshot(_at_or_before(timeline, live.taken_at))
        # Every column of every socket, as the poll had it (counters too).
        assert {k: s.to_json() for k, s in shown.by_key.items()} == {
            k: s.to_json() for k, s in live.by_key.items()
        }
        checked += 1
    assert checked >= 3


def test_the_events_rebuild_every_poll_between_snapshots(session: Session) -> None:
    timeline = load(session.path)
    for live in session.polls:
        shown = timeline.snapshot(_at_or_before(timeline, live.taken_at))
        assert _rows(shown) == _rows(live), f"the poll of {live.taken_at}"


def test_frames_step_one_change_at_a_time(session: Session) -> None:
    timeline = load(session.path)
    port = session.port
    listening = [_listening(timeline.snapshot(i), port) for i in range(len(timeline))]
    first = listening.index(True)
    # The frame before the server's LISTEN has none; that frame says what changed.
    assert not listening[first - 1]
    assert any(f"LISTEN tcp 127.0.0.1:{port}" in t for t in timeline.frames[first].texts)
    # The listener opened before the recording is in the first frame (from its snapshot).
    assert _listening(timeline.snapshot(0), session.before)
    assert timeline.frames[0].kind == "snapshot"
    # Positions strictly increase: each names one frame.
    assert all(a < b for a, b in zip(timeline.times[:-1], timeline.times[1:], strict=True))
    kinds = {f.kind for f in timeline.frames}
    assert {"sockets", "process"} <= kinds
    # The lab processes: both started; at the end both have ended.
    names = {p.name: p for p in timeline.processes(len(timeline) - 1)}
    assert set(names) == {"server", "client"}
    assert not names["server"].running and not names["client"].running
    started = next(i for i, f in enumerate(timeline.frames) if "server started" in f.texts[0])
    assert any(p.name == "server" and p.running for p in timeline.processes(started))
    assert all(p.name != "server" for p in timeline.processes(started - 1))


def shows(source: ReplaySource, index: int, now: float) -> bool:
    """A poll of ``source`` is the tables of frame ``index``, stamped with the time shown."""
    snap = source.poll()
    return snap.by_key is source.timeline.snapshot(index).by_key and snap.taken_at == now


def test_source_pause_steps_and_speed(session: Session) -> None:
    timeline = load(session.path)
    now = [100.0]
    source = ReplaySource(timeline, clock=lambda: now[0], paused=True, wall=lambda: now[0])
    n = len(timeline)
    assert shows(source, 0, now[0]) and source.polled == 0
    now[0] += 60  # paused: the clock does not move it
    assert shows(source, 0, now[0])
    assert source.step(1) == 1 and shows(source, 1, now[0])
    assert source.step(1) == 2 and source.step(-1) == 1
    assert source.step(-5) == 0  # not before the first
    assert source.to_end() == n - 1 and source.position().ended
    assert source.step(1) == n - 1  # nor after the last
    assert source.to_start() == 0
    # Playing: recorded seconds = clock seconds x speed.
    gap = timeline.times[2] - timeline.times[0]
    source.set_paused(False)
    now[0] += gap / 2 + 1e-4
    assert shows(source, timeline.index_at(timeline.start + gap / 2), now[0])
    source.to_start()
    assert source.faster() == 2.0 and source.faster() == 4.0
    now[0] += gap / 4 + 1e-4  # 4x: a quarter of the clock time reaches frame 2
    source.poll()
    assert source.polled == timeline.index_at(timeline.start + gap + 4e-4) >= 2
    for _ in SPEEDS:
        source.faster()
    assert source.speed == 16.0
    for _ in SPEEDS:
        source.slower()
    assert source.speed == 0.25
    # Played to the end, it stops there; playing again starts over.
    source.set_speed(16)
    now[0] += timeline.end - timeline.start
    source.poll()
    assert source.polled == n - 1 and source.paused and source.position().ended
    source.set_paused(False)
    assert source.position().index == 0 and not source.paused
    # A step pauses.
    source.step(1)
    assert source.paused and "paused" in source.position().describe()


def test_print_is_one_line_per_frame(session: Session) -> None:
    timeline = load(session.path)
    lines = list(frame_lines(timeline))
    assert lines[0].startswith(f"# {session.path.name}: format 2, {len(timeline)} frames")
    body = [ln for ln in lines if not ln.startswith("#")]
    assert len(body) == len(timeline)
    first = next(i for i, ln in enumerate(body) if f"+ LISTEN tcp 127.0.0.1:{session.port}" in ln)
    listen = timeline.snapshot(first).counts()["LISTEN"]
    assert f"{listen} LISTEN" in body[first] and f"{first + 1}/{len(timeline)}" in body[first]


def _rewrite(path: Path, out: Path, keep: object, header: dict[str, object] | None = None) -> Path:
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    head.update(header or {})
    kept = [ln for ln in lines[1:] if keep(json.loads(ln))]  # type: ignore[operator]
    out.write_text("\n".join([json.dumps(head), *kept]) + "\n")
    return out


def test_a_format_1_record_is_rebuilt_from_its_events(session: Session, tmp_path: Path) -> None:
    old = _rewrite(
        session.path,
        tmp_path / "old.jsonl",
        lambda e: e["type"] != "snapshot",
        {"format": 1},
    )
    timeline = load(old)
    assert timeline.format == 1 and timeline.snapshots == 0
    assert any("no snapshots" in n and "rebuilt from the events" in n for n in timeline.notes)
    assert timeline.frames[0].kind == "start" and not timeline.snapshot(0).sockets
    # What never changed (the listener opened before) is not known without snapshots...
    assert not any(_listening(timeline.snapshot(i), session.before) for i in range(len(timeline)))
    # ...what changed is, at the same moment as in the full record.
    full = load(session.path)
    at_old = next(
        f.at
        for i, f in enumerate(timeline.frames)
        if _listening(timeline.snapshot(i), session.port)
    )
    at_full = next(
        f.at for i, f in enumerate(full.frames) if _listening(full.snapshot(i), session.port)
    )
    assert at_old == at_full
    assert any(
        ln.startswith("# this record (format 1) has no snapshots") for ln in frame_lines(timeline)
    )


def test_torn_and_broken_lines_are_skipped(session: Session, tmp_path: Path) -> None:
    lines = session.path.read_text().splitlines()
    broken = json.loads(next(ln for ln in lines if '"type":"socket"' in ln))
    broken["socket"] = "not a socket"
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join([*lines, json.dumps(broken), lines[-1][: len(lines[-1]) // 2]]))
    timeline = load(torn)
    assert timeline.skipped == 2
    assert any("2 unreadable line(s)" in n for n in timeline.notes)
    assert len(timeline) == len(load(session.path))


def test_bad_files_are_refused_in_words(session: Session, tmp_path: Path) -> None:
    cases: dict[str, tuple[str | bytes, str]] = {
        "empty.jsonl": ("", "is empty: there is nothing to replay"),
        "blank.jsonl": ("\n\n  \n", "is empty"),
        "text.jsonl": ("hello\nworld\n", "is not a session record: none of its lines is one"),
        "binary.jsonl": (bytes(range(256)) * 4, "is not a session record"),
        "other.jsonl": ('{"type": "note", "text": "x"}\n', "does not start with a session line"),
        "header.jsonl": ('{"type": "session", "format": 2, "at": 1}\n', "nothing to replay"),
        "newer.jsonl": ('{"type": "session", "format": 9}\n', "newer observatory (format 9)"),
        "weird.jsonl": ('{"type": "session", "format": "two"}\n', "its format is 'two'"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        with pytest.raises(ReplayError) as refused:
            load(path)
        message = str(refused.value)
        assert words in message and str(path) in message and "\n" not in message, name
    with pytest.raises(RecordError, match="no such file"):
        load(tmp_path / "missing.jsonl")
    with pytest.raises(RecordError, match="is a directory"):
        load(tmp_path)


def test_latest_is_the_newest_record(session: Session, tmp_path: Path) -> None:
    env = {"OBSERVATORY_DATA_DIR": str(tmp_path / "data"), "XDG_RUNTIME_DIR": ""}
    with pytest.raises(ReplayError, match="no session record yet"):
        latest_record(env)
    folder = tmp_path / "data" / "sessions"
    folder.mkdir(parents=True)
    older, newer = folder / "20250101-090000.jsonl", folder / "20250101-100000.jsonl"
    for path in (older, newer):
        path.write_bytes(session.path.read_bytes())
    now = time.time()

    os.utime(older, (now - 60, now - 60))
    os.utime(newer, (now, now))
    assert latest_record(env) == newer


def test_printable_escapes_control_characters() -> None:
    assert printable("tcp\x1b[2J-server\r\n\u202e") == "tcp\\x1b[2J-server\\x0d\\x0a\\u202e"
    assert printable("café · ✓") == "café · ✓"
