"""End-to-end: a session recorded by the real dashboard (in tmux), then replayed: printed
(``observatory replay RECORD --print``) and played in the dashboard, stepped with its keys."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.replay import load
from tests.conftest import REPO, free_port, observatory
from tests.e2e.test_tmux import STARTED, dashboard_up, listen_rows
from tests.e2e.tmuxutil import Tmux, box_rows, observatory_argv, require_tmux, rows_with

pytestmark = pytest.mark.timeout(90)


@dataclass(frozen=True)
class Recorded:
    path: Path
    data_dir: Path
    port: int  # the lab server the dashboard launched


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "OBSERVATORY_DATA_DIR": str(data_dir)}


def _filter(term: Tmux, text: str) -> None:
    """The dashboard's own filter (``/``): parallel noise cannot push the rows away."""
    term.send_keys("/")
    term.wait_for(
        lambda pane: any(ln.strip(" ▊▎").startswith("filter") for ln in pane.splitlines()[1:]),
        what="the filter box",
    )
    term.type_text(text)
    term.wait_for(f"filter: {text}", what="the filter in the status line")
    term.send_keys("Enter")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """The dashboard launches a tcp-server (its dialog), a tcp-client connects and leaves,
    q stops the server: the dashboard's own record of it."""
    require_tmux()
    data_dir = tmp_path_factory.mktemp("data")
    argv, cwd = observatory_argv()
    term = Tmux("replay-record")
    try:
        term.start(
            ["env", f"OBSERVATORY_DATA_DIR={data_dir}", *argv, "--interval", "0.25"],
            width=150,
            height=40,
            cwd=cwd,
        )
        term.wait_for(dashboard_up, timeout=20, what="the dashboard")
        port = free_port()
        _filter(term, f"127.0.0.1:{port}")
        term.send_keys("l")
        term.wait_for("Will run: tcp-server 6000", what="the launch dialog")
        term.send_keys("Tab", "Tab", *["BSpace"] * 6)
        term.wait_for(lambda pane: "Will run: tcp-server 6000" not in pane, what="port emptied")
        term.type_text(str(port))
        term.wait_for(f"Will run: tcp-server {port} ", what=f"port {port} in the preview")
        term.send_keys("Enter")
        term.wait_for(
            lambda pane: listen_rows(pane, f"127.0.0.1:{port}", "/tcp-server"),
            timeout=15,
            what=f"LISTEN 127.0.0.1:{port}",
        )
        client = subprocess.run(
            [sys.executable, "-m", "app.labs.tcp_client", "127.0.0.1", "hi", str(port)]
            + ["--hold", "1"],
            cwd=REPO,
            capture_output=True,
            timeout=15,
        )
        assert client.returncode == 0, client.stderr
        term.send_keys("q")
        term.wait_for("Stop them and quit", what="the quit question")
        term.send_keys("y")
        assert term.wait_exit() == 0
    finally:
        term.kill()
    [path] = (data_dir / "sessions").glob("*.jsonl")
    yield Recorded(path, data_dir, port)


def test_the_dashboard_records_snapshots(recorded: Recorded) -> None:
    entries = [json.loads(line) for line in recorded.path.read_text().splitlines()]
    assert entries[0]["type"] == "session" and entries[0]["format"] == 2
    assert entries[1]["type"] == "snapshot"  # the first poll
    kinds = [(e["type"], e.get("kind")) for e in entries]
    assert ("process", "started") in kinds and ("socket", "listener-opened") in kinds
    assert ("socket", "connection-opened") in kinds


def test_print_one_line_per_frame(recorded: Recorded) -> None:
    done = observatory("replay", "latest", "--print", env=_env(recorded.data_dir), timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    n = len(load(recorded.path))
    assert lines[0].startswith(f"# {recorded.path.name}: format 2, {n} frames")
    body = [ln for ln in lines if not ln.startswith("#")]
    assert len(body) == n
    numbers = [int(m.group(1)) for m in (re.search(r"  (\d+)/\d+  ", ln) for ln in body) if m]
    assert numbers == list(range(1, n + 1))
    port = recorded.port
    opened = next(i for i, ln in enumerate(body) if f"+ LISTEN tcp 127.0.0.1:{port}" in ln)
    started = next(i for i, ln in enumerate(body) if " started, pid " in ln)
    connected = next(i for i, ln in enumerate(body) if "+ ESTABLISHED" in ln and f":{port}" in ln)
    assert started < opened < connected
    assert "1 lab process(es) running" in body[opened]


def test_print_escapes_what_a_record_holds(recorded: Recorded, tmp_path: Path) -> None:
    lines = recorded.path.read_text().splitlines()
    evil = [
        ln.replace("tcp-server", "tcp-\\u001b[2J\\u001b]0;owned\\u0007server")
        for ln in lines  # (JSON escapes: the record holds the raw characters once read)
    ]
    path = tmp_path / "evil.jsonl"
    path.write_text("\n".join(evil) + "\n")
    done = observatory("replay", str(path), "--print")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "tcp-\\x1b[2J\\x1b]0;owned\\x07server" in done.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "is empty: there is nothing to replay"), ("hello\n", "is not a session record")],
)
def test_bad_records_are_refused_in_words(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    done = observatory("replay", str(path), "--print")
    assert done.returncode == 2
    assert done.stderr.startswith(f"observatory replay: {path} {words}")
    assert done.stderr.count("\n") == 1
    missing = observatory("replay", "latest", env=_env(tmp_path / "none"))
    assert missing.returncode == 2 and "no session record yet" in missing.stderr
    assert "Traceback" not in missing.stderr + done.stderr


def _bar(pane: str) -> str:
    return next((ln for ln in pane.splitlines() if "REPLAY" in ln), "")


def test_replay_in_the_dashboard_steps_back_and_forth(recorded: Recorded) -> None:
    require_tmux()
    timeline = load(recorded.path)
    n, port = len(timeline), recorded.port
    where = f"127.0.0.1:{port}"
    shows = [
        any(s.state == "LISTEN" and s.local_port == port for s in timeline.snapshot(i).sockets)
        for i in range(n)
    ]
    first = shows.index(True)  # the frame whose change is the server's LISTEN
    connected = next(
        i
        for i in range(n)
        if any(
            s.state == "ESTABLISHED" and port in (s.local_port, s.remote_port)
            for s in timeline.snapshot(i).sockets
        )
    )
    argv, cwd = observatory_argv()
    term = Tmux("replay-play")
    try:
        term.start([*argv, "replay", str(recorded.path), "--paused"], width=150, height=40, cwd=cwd)
        term.wait_for(f"frame 1/{n} · 1x · paused", timeout=20, what="the replay bar")
        _filter(term, where)
        term.wait_for(lambda p: "Play/pause" in p.splitlines()[-1], what="the replay's keys")
        pane = term.capture()
        assert pane.splitlines()[0].lstrip().startswith(STARTED)
        # A replay offers no key that acts on the machine; its own keys are in the footer.
        footer = pane.splitlines()[-1]
        assert "Play/pause" in footer and "Back" in footer and "Launch" not in footer
        assert "Kill" not in footer and "Freeze" not in footer
        assert box_rows(pane, "LISTEN") is not None and not listen_rows(pane, where)

        def step_to(index: int, key: str) -> None:
            for _ in range(abs(index - current[0])):
                current[0] += 1 if key == "]" else -1
                term.send_keys(key)
                term.wait_for(f"frame {current[0] + 1}/{n} ", what=f"frame {current[0] + 1}")

        current = [0]
        step_to(first, "]")
        term.wait_for(lambda p: listen_rows(p, where, "/tcp-server"), what=f"LISTEN {where}")
        assert "LISTEN tcp " + where in _bar(term.capture())  # the bar says what changed
        term.wait_for("Lab processes · 1 running", what="the recorded server in the Lab tab")
        step_to(first - 1, "[")
        term.wait_for(lambda p: not listen_rows(p, where), what=f"{where} gone again")
        step_to(connected, "]")
        term.wait_for(lambda p: rows_with(p, "ESTABLISHED", where), what="the connection")
        term.send_keys("k")  # (hidden: nothing is killed, nothing is asked)
        term.send_keys("}")
        term.wait_for(f"frame {n}/{n} · 1x · at the end", what="the last frame")
        assert "Kill pid" not in term.capture() and "replay of a record" not in term.capture()
        term.send_keys("{")
        term.wait_for(f"frame 1/{n} · 1x · paused", what="the first frame")
        term.send_keys("space")
        term.wait_for("· 1x · playing", what="playing")
        term.send_keys(">")
        term.wait_for("· 2x · playing", what="playing twice as fast")
        # It plays on by itself to the end, and stops there.
        length = timeline.end - timeline.start
        term.wait_for(f"frame {n}/{n} · 2x · at the end", timeout=length / 2 + 10)
        term.send_keys("q")
        assert term.wait_exit() == 0
    finally:
        term.kill()
