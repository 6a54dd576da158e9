"""Scenario files: every kind of mistake refused in words, before anything starts."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from app.core.procs import ProcessManager
from app.core.scenario import (
    Scenario,
    ScenarioError,
    check_scenario,
    load_scenario,
)
from app.core.scenario_start import start_scenario

ROOT = Path(__file__).resolve().parents[2]


def errors_of(tmp_path: Path, text: str, name: str = "s.toml") -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return list(info.value.errors)


def one_error(tmp_path: Path, text: str) -> str:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0].replace(str(tmp_path / "s.toml"), "s.toml")


GOOD = """
[[process]]
name = "server1"
program = "tcp-server"
args = ["6000", "--bind", "0.0.0.0"]

[[process]]
name = "client1"
program = "tcp-client"
args = ["127.0.0.1", "hello", 6000]   # a bare number is taken as text
delay = 0.5

[[process]]
name = "nc"
command = ["sleep", "1"]
delay = 1
"""


def test_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD, encoding="utf-8")
    scenario = load_scenario(path)
    assert isinstance(scenario, Scenario) and scenario.path == path
    assert scenario.names == ["server1", "client1", "nc"]
    server, client, nc = scenario.entries
    assert (server.index, server.program, server.args, server.command, server.delay) == (
        1,
        "tcp-server",
        ("6000", "--bind", "0.0.0.0"),
        None,
        0.0,
    )
    assert client.args == ("127.0.0.1", "hello", "6000") and client.delay == 0.5
    assert nc.program is None and nc.command == ("sleep", "1") and nc.delay == 1.0
    assert client.command_line == "tcp-client 127.0.0.1 hello 6000"
    assert check_scenario(path) == []
    with pytest.raises(AttributeError):
        scenario.entries = ()  # type: ignore[misc]


def test_the_lecture_file_is_valid() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "session4.toml")
    assert scenario.names == ["server1", "server2", "server3", "client1", "client2"]
    ports = [e.args[0] for e in scenario.entries if e.program == "tcp-server"]
    assert ports == ["6000", "16000", "45321"]
    assert all("0.0.0.0" in e.args for e in scenario.entries if e.program == "tcp-server")
    busy = [e.name for e in scenario.entries if "busy" in e.args]
    assert busy == ["server1"]


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\nname = "a"\nprogram = tcp-server\n')
    assert error.startswith("s.toml: not valid TOML: ")
    assert "line 3" in error


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="nowhere.toml: no such file"):
        load_scenario(tmp_path / "nowhere.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[[process]]")
    with pytest.raises(ScenarioError, match="not a text file in UTF-8"):
        load_scenario(tmp_path / "bin.toml")
    with pytest.raises(ScenarioError, match="is a folder"):
        load_scenario(tmp_path)


def test_unknown_key_in_an_entry(tmp_path: Path) -> None:
    error = one_error(
        tmp_path,
        '[[process]]\nname = "s"\nprog = "tcp-server"\nprogram = "tcp-server"\nargs = ["6000"]\n',
    )
    assert error == 's.toml: process #1 "s": key "prog": unknown key (did you mean "program"?)'


def test_unknown_top_level_key_and_no_process(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, 'title = "x"\n')
    assert errors == [
        f'{tmp_path / "s.toml"}: key "title": unknown; '
        "a scenario holds only [[process]] and [[host]] tables",
        f"{tmp_path / 's.toml'}: no [[process]] table: nothing to start",
    ]
    error = one_error(tmp_path, '[process]\nname = "a"\ncommand = ["true"]\n')
    assert error == "s.toml: write [[process]] with two brackets for each process, not [process]"


def test_missing_name(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\ncommand = ["true"]\n')
    assert error == 's.toml: process #1: key "name": missing (every process needs a name)'
    error = one_error(tmp_path, '[[process]]\nname = 7\ncommand = ["true"]\n')
    assert error == 's.toml: process #1: key "name": must be text, not a whole number'
    error = one_error(tmp_path, '[[process]]\nname = "two words"\ncommand = ["true"]\n')
    assert error.startswith('s.toml: process #1 "two words": key "name": a name is 1 to 40')


def test_duplicate_names(tmp_path: Path) -> None:
    text = '[[process]]\nname = "a"\ncommand = ["true"]\n' * 2
    error = one_error(tmp_path, text)
    assert error == 's.toml: process #2 "a": key "name": "a" is already the name of process #1'


def test_both_program_and_command(tmp_path: Path) -> None:
    error = one_error(
        tmp_path, '[[process]]\nname = "a"\nprogram = "tcp-server"\ncommand = ["true"]\n'
    )
    assert error == (
        's.toml: process #1 "a": key "command": give either "program" (a built-in) '
        'or "command" (any program), not both'
    )


def test_neither_program_nor_command(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\nname = "a"\ndelay = 1\n')
    assert error.startswith('s.toml: process #1 "a": key "program": missing: give "program"')


def test_unknown_builtin(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\nname = "a"\nprogram = "tcp-sever"\nargs = ["1"]\n')
    assert error.startswith(
        's.toml: process #1 "a": key "program": there is no built-in program \'tcp-sever\''
    )
    assert error.endswith("did you mean 'tcp-server'?")


def test_builtin_arguments_are_checked_by_the_program(tmp_path: Path) -> None:
    text = (
        '[[process]]\nname = "server1"\nprogram = "tcp-server"\nargs = ["6000"]\n'
        '[[process]]\nname = "client1"\nprogram = "tcp-client"\nargs = ["127.0.0.1"]\n'
    )
    error = one_error(tmp_path, text)
    assert error.startswith(
        's.toml: process #2 "client1": key "args": the following arguments are required: '
        "MESSAGE, PORT (usage: tcp-client IP MESSAGE PORT"
    )
    error = one_error(
        tmp_path, '[[process]]\nname = "s"\nprogram = "tcp-server"\nargs = ["70000"]\n'
    )
    assert error == (
        's.toml: process #1 "s": key "args": port must be a number from 1 to 65535, not 70000'
    )


def test_args_must_be_text_or_whole_numbers(tmp_path: Path) -> None:
    error = one_error(
        tmp_path, '[[process]]\nname = "s"\nprogram = "tcp-server"\nargs = [6000.5]\n'
    )
    assert error == (
        's.toml: process #1 "s": key "args": item 1 must be text in quotes or a whole number, '
        "not a decimal number"
    )
    error = one_error(tmp_path, '[[process]]\nname = "s"\nprogram = "tcp-server"\nargs = "6000"\n')
    assert 'key "args": must be a list of arguments' in error
    error = one_error(tmp_path, '[[process]]\nname = "s"\ncommand = ["true"]\nargs = ["x"]\n')
    assert 'key "args": only goes with "program"' in error


def test_command_must_exist(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = ["tcp_client_nowhere", "1"]\n')
    assert error == 's.toml: process #1 "c": key "command": command not found: tcp_client_nowhere'
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = ["./tcp_server1", "6000"]\n')
    assert error == 's.toml: process #1 "c": key "command": no such file: ./tcp_server1'
    program = tmp_path / "tcp_server1"
    program.write_text("#!/bin/sh\nexit 0\n")
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = ["./tcp_server1", "6000"]\n')
    assert error == (
        's.toml: process #1 "c": key "command": ./tcp_server1 is not executable '
        "(try: chmod +x ./tcp_server1)"
    )
    program.chmod(0o755)
    # Relative to the scenario's folder, not to where the command is typed.
    other = tmp_path / "elsewhere"
    other.mkdir()
    old = os.getcwd()
    try:
        os.chdir(other)
        scenario = load_scenario(tmp_path / "s.toml")
    finally:
        os.chdir(old)
    assert scenario.entries[0].command == ("./tcp_server1", "6000")
    assert scenario.folder == tmp_path.resolve()


def test_command_forms(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = "nc -vn 127.0.0.1 7000"\n')
    assert error == (
        's.toml: process #1 "c": key "command": must be a list, one item per argument: '
        'command = ["nc", "-vn", "127.0.0.1", "7000"]'
    )
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = []\n')
    assert error.endswith('key "command": is empty: give the program and its arguments')


def test_bad_delay(tmp_path: Path) -> None:
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = ["true"]\ndelay = -1\n')
    assert (
        error
        == 's.toml: process #1 "c": key "delay": must be a number of seconds, 0 or more, not -1'
    )
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = ["true"]\ndelay = "1s"\n')
    assert error == 's.toml: process #1 "c": key "delay": must be a number of seconds, not text'
    error = one_error(tmp_path, '[[process]]\nname = "c"\ncommand = ["true"]\ndelay = nan\n')
    assert 'key "delay": must be a number of seconds, 0 or more, not nan' in error


ALL_MISTAKES = """\
extra = 1

[[process]]
name = "server1"
program = "tcp-server"
args = ["6000"]
colour = "red"

[[process]]
name = "client1"
program = "tcp-client"
args = ["127.0.0.1", "hello"]

[[process]]
program = "tcp-server"
args = ["7000"]

[[process]]
name = "server1"
command = ["true"]

[[process]]
name = "both"
program = "tcp-server"
command = ["true"]

[[process]]
name = "neither"

[[process]]
name = "ghost"
program = "ftp-server"

[[process]]
name = "missing"
command = ["no-such-program-xyz"]

[[process]]
name = "late"
command = ["true"]
delay = -2
"""


def test_a_file_with_every_mistake_lists_them_all_in_order(tmp_path: Path) -> None:
    errors = [
        e.replace(str(tmp_path / "s.toml"), "s.toml") for e in errors_of(tmp_path, ALL_MISTAKES)
    ]
    expected_starts = [
        's.toml: key "extra": unknown',
        's.toml: process #1 "server1": key "colour": unknown key',
        's.toml: process #2 "client1": key "args": the following arguments are required: PORT',
        's.toml: process #3: key "name": missing',
        's.toml: process #4 "server1": key "name": "server1" is already the name of process #1',
        's.toml: process #5 "both": key "command": give either',
        's.toml: process #6 "neither": key "program": missing',
        's.toml: process #7 "ghost": key "program": there is no built-in program',
        's.toml: process #8 "missing": key "command": command not found: no-such-program-xyz',
        's.toml: process #9 "late": key "delay": must be a number of seconds, 0 or more, not -2',
    ]
    assert len(errors) == len(expected_starts), errors
    for error, start in zip(errors, expected_starts, strict=True):
        assert error.startswith(start), (error, start)
        assert "\n" not in error
    assert check_scenario(tmp_path / "s.toml") == [
        e.replace("s.toml", str(tmp_path / "s.toml"), 1) for e in errors
    ]


def test_start_scenario_honours_delays_and_stop(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[[process]]\nname = "a"\ncommand = ["sleep", "30"]\n'
        '[[process]]\nname = "b"\ncommand = ["sleep", "30"]\ndelay = 0.4\n'
        '[[process]]\nname = "c"\ncommand = ["sleep", "30"]\ndelay = 30\n',
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    stop = threading.Event()
    seen: list[str] = []
    with ProcessManager(register_atexit=False) as manager:
        threading.Timer(1.0, stop.set).start()
        began = time.monotonic()
        started = start_scenario(
            manager, scenario, stop=stop, on_started=lambda entry, info: seen.append(entry.name)
        )
        took = time.monotonic() - began
        assert [i.name for i in started] == seen == ["a", "b"]
        a, b = manager.get("a"), manager.get("b")
        assert a.started_at is not None and b.started_at is not None
        assert b.started_at - a.started_at >= 0.39
        assert 0.9 < took < 5  # the 30 s delay was cut short by stop
        assert manager.names() == ["a", "b"]


def test_commands_start_in_the_scenario_folder(tmp_path: Path) -> None:
    script = tmp_path / "where"
    script.write_text(f"#!{sys.executable}\nimport os\nprint(os.getcwd())\n")
    script.chmod(0o755)
    path = tmp_path / "cwd.toml"
    path.write_text('[[process]]\nname = "w"\ncommand = ["./where"]\n', encoding="utf-8")
    with ProcessManager(register_atexit=False) as manager:
        start_scenario(manager, load_scenario(path))
        assert manager.wait("w", 10).state == "exited 0"
        assert manager.output("w") == [str(tmp_path.resolve())]
