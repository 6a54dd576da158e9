"""Session recording: JSON Lines that survive kill -9, and handouts from them."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.model import Snapshot, Socket, SocketEvent
from app.core.record import (
    FORMAT_VERSION,
    SNAPSHOT_EVERY,
    RecordError,
    SessionRecorder,
    read_session,
    sessions_dir,
    try_start,
)
from app.core.record_export import CSV_COLUMNS, export_session, to_csv, to_markdown
from tests.conftest import REPO

FIXED = 1_700_000_000.0  # a fixed clock: 2023-11-14, same second for every call


def listener_event() -> SocketEvent:
    s = Socket(
        proto="tcp",
        local_addr="0.0.0.0",
        local_port=6000,
        remote_addr=None,
        remote_port=None,
        state="LISTEN",
        pid=2759,
        process="tcp_server1",
        user="alumno",
        service="x11",
    )
    return SocketEvent(FIXED, "listener-opened", s.key, s, None, "LISTEN")


def change_event() -> SocketEvent:
    s = Socket(
        proto="tcp",
        local_addr="127.0.0.1",
        local_port=39846,
        remote_addr="127.0.0.1",
        remote_port=6000,
        state="TIME_WAIT",
        owner="kernel",
    )
    return SocketEvent(FIXED + 1, "state-changed", s.key, s, "FIN_WAIT2", "TIME_WAIT")


def test_sessions_dir_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert sessions_dir({}, home) == home / ".local/share/connection-observatory/sessions"
    assert sessions_dir({"XDG_DATA_HOME": "/x/data"}, home) == Path(
        "/x/data/connection-observatory/sessions"
    )
    # A relative XDG_DATA_HOME is invalid by the spec and ignored.
    assert sessions_dir({"XDG_DATA_HOME": "rel"}, home) == sessions_dir({}, home)
    assert sessions_dir({"XDG_DATA_HOME": "/x/data", "OBSERVATORY_DATA_DIR": "/y"}, home) == Path(
        "/y/sessions"
    )


def test_start_uses_the_environment(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    with SessionRecorder.start(env=env, clock=lambda: FIXED) as rec:
        assert rec.path.parent == tmp_path / "xdg" / "connection-observatory" / "sessions"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(FIXED))
        assert rec.path.name == f"{stamp}.jsonl"
    env = {"OBSERVATORY_DATA_DIR": str(tmp_path / "obs"), **env}
    with SessionRecorder.start(env=env) as rec:
        assert rec.path.parent == tmp_path / "obs" / "sessions"


def test_record_and_read_back(tmp_path: Path) -> None:
    first, second = listener_event(), change_event()
    with SessionRecorder.start(tmp_path, clock=lambda: FIXED) as rec:
        assert rec.record_event(first)
        assert rec.record_events([second]) == 1
        assert rec.record_process({"kind": "started", "pid": 42, "argv": ["tcp-server", "6000"]})
        assert rec.record_process({"pid": 42, "path": Path("/tmp"), "raw": b"hi"}, kind="exited")
        assert rec.record_note("Experiment 8: kill -9 the server")
        assert rec.ok and rec.warning is None and rec.lines_written == 6
        path = rec.path
    log = read_session(path)
    assert log.skipped == 0
    types = [e["type"] for e in log.entries]
    assert types == ["session", "socket", "socket", "process", "process", "note"]
    header, ev1, ev2, p1, p2, note = log.entries
    assert header["format"] == FORMAT_VERSION == 2
    assert ev1["kind"] == "listener-opened" and ev1["key"] == first.key
    assert ev1["text"] == first.describe()
    assert ev1["socket"] == json.loads(json.dumps(first.socket.to_json()))
    assert ev2["old_state"] == "FIN_WAIT2" and ev2["new_state"] == "TIME_WAIT"
    assert p1["kind"] == "started" and p1["data"]["argv"] == ["tcp-server", "6000"]
    assert p2["kind"] == "exited" and p2["data"] == {"pid": 42, "path": "/tmp", "raw": "hi"}
    assert note["text"] == "Experiment 8: kill -9 the server"
    assert all(e["at"] == FIXED and e["time"] for e in log.entries)


def test_two_sessions_in_one_second_do_not_collide(tmp_path: Path) -> None:
    a = SessionRecorder.start(tmp_path, clock=lambda: FIXED)
    b = SessionRecorder.start(tmp_path, clock=lambda: FIXED)
    try:
        assert a.path != b.path and b.path.name.endswith("-2.jsonl")
    finally:
        a.close()
        b.close()


def test_unwritable_directory_is_one_line_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RecordError) as err:
        SessionRecorder.start(blocker / "sessions")
    message = str(err.value)
    assert "\n" not in message and "not a directory" in message
    recorder, warning = try_start(blocker / "sessions")
    assert recorder is None and warning == message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        recorder, warning = try_start(folder)
        assert recorder is None and warning and "permission denied" in warning
    finally:
        folder.chmod(0o700)


def test_folder_of_another_user_as_nobody(as_nobody: Any) -> None:
    # Root ignores permissions; user nobody does not. / belongs to root.
    code = (
        "from app.core.record import try_start\n"
        "rec, warning = try_start('/observatory-no-such-folder/sessions')\n"
        "print(rec, warning)\n"
    )
    out = as_nobody("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("None cannot create the session folder")
    assert "permission denied" in out.stdout and out.stdout.count("\n") == 1


def test_write_failure_sets_a_warning_instead_of_raising() -> None:
    # /dev/full answers every write with ENOSPC: a disk that filled up mid-session.
    rec = SessionRecorder(Path("/dev/full"), os.open("/dev/full", os.O_WRONLY))
    try:
        assert rec.record_note("lost") is False
        assert rec.warning == "cannot write /dev/full: the disk is full"
        assert not rec.ok
    finally:
        rec.close()
    assert rec.closed
    assert rec.record_note("after close") is False


WRITER = textwrap.dedent(
    """
    import sys, time
    from app.core.model import Socket, SocketEvent
    from app.core.record import SessionRecorder
    rec = SessionRecorder.start(sys.argv[1])
    print(rec.path, flush=True)
    n = 0
    while True:
        n += 1
        s = Socket("tcp", "127.0.0.1", 40000 + n % 20000, "127.0.0.1", 6000, "ESTABLISHED")
        rec.record_event(SocketEvent(time.time(), "connection-opened", s.key, s))
        rec.record_note("x" * (n % 5000))  # long and short lines
        print(n, flush=True)
    """
)


def test_kill_9_loses_no_recorded_line(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
        done = 0
        while done < 300:  # let it get well into its stride, then kill it mid-loop
            done = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # Every loop it announced was fully recorded before the announcement.
        rest = proc.stdout.read().split()
        done = int(rest[-1]) if rest and rest[-1].isdigit() else done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    log = read_session(path)
    assert log.skipped == 0  # one write() per line: no torn line even under kill -9
    sockets = [e for e in log.entries if e["type"] == "socket"]
    notes = [e for e in log.entries if e["type"] == "note"]
    assert len(sockets) >= done and len(notes) >= done
    assert all(line.endswith(b"\n") for line in path.read_bytes().splitlines(keepends=True))


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"type": "note", "at": 1, "time": "", "text": "ok"}\n{"type": "no')
    log = read_session(path)
    assert [e["text"] for e in log.entries] == ["ok"] and log.skipped == 1
    with pytest.raises(RecordError, match="cannot read"):
        read_session(tmp_path / "missing.jsonl")


def recorded_session(tmp_path: Path) -> Path:
    with SessionRecorder.start(tmp_path, clock=lambda: FIXED) as rec:
        rec.record_event(listener_event())
        rec.record_event(change_event())
        rec.record_process({"pid": 7, "name": "nc", "line": "Connection refused"}, kind="output")
        rec.record_note("a | pipe\nand a newline")
        return rec.path


def test_export_markdown(tmp_path: Path) -> None:
    path = recorded_session(tmp_path)
    out = export_session(path, "md")
    assert out == path.with_suffix(".md")
    text = out.read_text()
    lines = text.splitlines()
    assert lines[0] == f"# Session {path.stem}"
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| time | event | what happened | state | pid/program |"
    assert len(table) == 2 + 4  # header, rule, four events (the header line is not one)
    assert all(line.count(" | ") == 4 for line in table[2:3])
    assert "2759/tcp_server1" in table[2] and "LISTEN" in table[2]
    assert "FIN_WAIT2 → TIME_WAIT" in table[3]
    assert "Connection refused" in table[4] and "7/nc" in table[4]
    assert "a \\| pipe and a newline" in table[5]
    assert to_markdown([]).count("\n") == 2


def test_export_csv(tmp_path: Path) -> None:
    path = recorded_session(tmp_path)
    out = export_session(path, "csv", tmp_path / "handout.csv")
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert len(rows) == 4
    assert rows[0]["local"] == "0.0.0.0:6000" and rows[0]["remote"] == ""
    assert rows[0]["pid"] == "2759" and rows[0]["state"] == "LISTEN"
    # describe() starts with "+": kept as text for spreadsheets.
    assert rows[0]["text"] == "'" + listener_event().describe()
    assert rows[1]["old_state"] == "FIN_WAIT2" and rows[1]["owner"] == "kernel"
    assert rows[3]["text"] == "a | pipe\nand a newline"
    raw = list(
        csv.DictReader(io.StringIO(to_csv(read_session(path).entries, spreadsheet_safe=False)))
    )
    assert raw[0]["text"] == listener_event().describe()


def test_export_refuses_unknown_format(tmp_path: Path) -> None:
    path = recorded_session(tmp_path)
    with pytest.raises(RecordError, match="md and csv"):
        export_session(path, "pdf")


def test_each_line_reaches_the_file_at_once(tmp_path: Path) -> None:
    # No user-space buffer: another reader sees the line as soon as record_* returns.
    with SessionRecorder.start(tmp_path) as rec:
        assert rec.record_note("now")
        assert read_session(rec.path).entries[-1]["text"] == "now"
        assert rec.record_event(listener_event())
        assert read_session(rec.path).entries[-1]["kind"] == "listener-opened"


# -- snapshots (format 2): the replay's key frames -------------------------------------------
def test_snapshots_first_then_when_due_and_changed(tmp_path: Path) -> None:
    from dataclasses import replace

    from app.core.sockets import default_source
    from tests.conftest import connect, listener

    held: list[socket.socket] = []
    try:
        server = listener(held)
        port = server.getsockname()[1]
        source = default_source()

        def own(snapshot: Snapshot) -> Snapshot:
            # Only this test's sockets: the machine's own (hundreds of TIME_WAITs after
            # the suite's other tests) would make a snapshot big enough to space the next.
            mine = [s for s in snapshot.sockets if port in (s.local_port, s.remote_port)]
            return Snapshot(taken_at=snapshot.taken_at, sockets=tuple(mine))

        first = own(source.poll())
        t0 = first.taken_at
        with SessionRecorder.start(tmp_path) as rec:
            assert rec.record_snapshot(first)  # the first poll: always
            assert not rec.record_snapshot(replace(first, taken_at=t0 + 1))  # not due
            # Due, but nothing differs: not written (an idle machine's record stays small).
            assert not rec.record_snapshot(replace(first, taken_at=t0 + SNAPSHOT_EVERY))
            connect(held, server)
            later = own(source.poll())
            assert not rec.record_snapshot(replace(later, taken_at=t0 + SNAPSHOT_EVERY / 2))
            assert rec.record_snapshot(replace(later, taken_at=t0 + SNAPSHOT_EVERY + 1))
            assert rec.snapshots_written == 2 and rec.ok
            path = rec.path
    finally:
        for s in held:
            s.close()
    lines = [e for e in read_session(path).entries if e["type"] == "snapshot"]
    assert [e["taken_at"] for e in lines] == [round(t0, 6), round(t0 + SNAPSHOT_EVERY + 1, 6)]

    def states(entry: dict[str, Any]) -> set[str]:
        return {
            s["state"] for s in entry["sockets"] if port in (s["local_port"], s.get("remote_port"))
        }

    assert states(lines[0]) == {"LISTEN"} and states(lines[1]) == {"LISTEN", "ESTABLISHED"}
    for entry in lines:
        for sock in entry["sockets"]:
            # Compact: no key that holds what Socket.from_json assumes without it.
            assert None not in sock.values() and sock.get("cmdline") != []
            assert sock.get("owner") != "process"
            if sock.get("pid") is not None and not sock.get("cmdline"):
                assert str(sock["pid"]) in entry["cmdlines"]  # one command line per pid
        assert entry["processes"] == []


def test_a_big_snapshot_spaces_the_next_one_out(tmp_path: Path) -> None:
    from dataclasses import replace

    from app.core.model import Snapshot
    from app.core.record import SNAPSHOT_BYTES_PER_SECOND

    one = listener_event().socket
    many = tuple(replace(one, local_port=port) for port in range(10000, 12000))
    with SessionRecorder.start(tmp_path) as rec:
        assert rec.record_snapshot(Snapshot(FIXED, many))
        size = rec.bytes_written - len(rec.path.read_bytes().splitlines(keepends=True)[0])
        gap = size / SNAPSHOT_BYTES_PER_SECOND
        assert gap > SNAPSHOT_EVERY
        fewer = Snapshot(FIXED, many[:-1])  # differs: only the time decides
        assert not rec.record_snapshot(replace(fewer, taken_at=FIXED + gap - 0.5))
        assert rec.record_snapshot(replace(fewer, taken_at=FIXED + gap + 0.5))


def test_exports_leave_snapshots_out(tmp_path: Path) -> None:
    from app.core.model import Snapshot

    path = recorded_session(tmp_path)
    plain = export_session(path, "md", tmp_path / "plain.md").read_text()
    with open(path, "ab") as out, SessionRecorder.start(tmp_path / "other") as rec:
        rec.record_snapshot(Snapshot(FIXED, (listener_event().socket,)))
        out.write(rec.path.read_bytes().splitlines(keepends=True)[1])
    assert [e["type"] for e in read_session(path).entries][-1] == "snapshot"
    assert export_session(path, "md", tmp_path / "with.md").read_text() == plain
    assert len(list(csv.DictReader(io.StringIO(export_session(path, "csv").read_text())))) == 4


def test_a_session_file_is_the_users_alone(tmp_path: Path) -> None:
    """Owners and command lines of a lab session: 0600, whatever the umask."""
    old = os.umask(0o002)
    try:
        with SessionRecorder.start(tmp_path) as rec:
            path = rec.path
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
