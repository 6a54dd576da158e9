"""Loading a scenario after manual launches starts what it can, one result per process."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.procs import ProcessManager
from app.core.scenario import load_scenario
from app.core.scenario_start import EntryResult, start_scenario_each
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def manager() -> Iterator[ProcessManager]:
    with ProcessManager(register_atexit=False) as m:
        yield m


def scenario_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_a_manual_server1_of_the_same_program_is_kept(
    manager: ProcessManager, tmp_path: Path
) -> None:
    p1, p2 = free_port(), free_port()
    manual = manager.launch_builtin("server1", "tcp-server", [str(p1)])
    path = scenario_file(
        tmp_path,
        f"""
[[process]]
name = "server1"
program = "tcp-server"
args = ["{p1}"]

[[process]]
name = "server2"
program = "tcp-server"
args = ["{p2}"]
""",
    )
    seen: list[EntryResult] = []
    results = start_scenario_each(manager, load_scenario(path), on_result=seen.append)
    assert seen == results
    assert [(r.name, r.outcome) for r in results] == [("server1", "kept"), ("server2", "started")]
    assert results[0].message == f"server1 is already running (pid {manual.pid}): kept"
    assert results[0].info is not None and results[0].info.pid == manual.pid
    assert results[1].message == ""
    assert manager.get("server2").running
    assert manager.get("server1").pid == manual.pid  # the manual one was not touched


def test_a_clash_with_another_program_starts_under_a_fresh_name(
    manager: ProcessManager, tmp_path: Path
) -> None:
    mine, theirs = free_port(), free_port()
    manager.launch_builtin("server1", "tcp-server", [str(mine)])
    path = scenario_file(
        tmp_path,
        f"""
[[process]]
name = "server1"
program = "tcp-server"
args = ["{theirs}"]
""",
    )
    (result,) = start_scenario_each(manager, load_scenario(path))
    assert (result.name, result.outcome) == ("server1-2", "renamed")
    assert result.message == (
        f"server1 is already the name of a running tcp-server {mine}: tcp-server {theirs} "
        "started as server1-2"
    )
    assert manager.get("server1-2").args == (str(theirs),)
    assert manager.get("server1").args == (str(mine),)


def test_one_entry_that_cannot_start_does_not_stop_the_others(
    manager: ProcessManager, tmp_path: Path
) -> None:
    tool = tmp_path / "tcp_server1"
    tool.write_text(f"#!{sys.executable}\nimport time; time.sleep(30)\n", encoding="utf-8")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    port = free_port()
    path = scenario_file(
        tmp_path,
        f"""
[[process]]
name = "c1"
command = ["./tcp_server1", "6000"]

[[process]]
name = "server2"
program = "tcp-server"
args = ["{port}"]
""",
    )
    scenario = load_scenario(path)
    os.unlink(tool)  # gone between checking and starting
    results = start_scenario_each(manager, scenario)
    assert [(r.name, r.outcome) for r in results] == [("c1", "failed"), ("server2", "started")]
    assert results[0].message == "c1 could not start: no such file: ./tcp_server1"
    assert results[0].info is None
    assert manager.get("server2").running


def test_an_ended_name_is_used_again(manager: ProcessManager, tmp_path: Path) -> None:
    manager.launch_command("c1", [sys.executable, "-c", "pass"])
    manager.wait("c1", 10)
    path = scenario_file(
        tmp_path,
        f"""
[[process]]
name = "c1"
command = ["{sys.executable}", "-c", "pass"]
""",
    )
    (result,) = start_scenario_each(manager, load_scenario(path))
    assert (result.name, result.outcome) == ("c1", "started")
