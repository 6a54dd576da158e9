"""Lesson files: checked whole before anything starts; each mistake one line naming the
file, the step (number and title) and the key or the sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import lesson as lesson_mod
from app.core.lesson import (
    MAX_SENTENCES,
    MAX_STEPS,
    Lesson,
    LessonError,
    find_lesson,
    lessons_dir,
    load_lesson,
    parse_lesson,
)
from app.core.lesson_run import compiler_problem, skip_reason
from tests.conftest import AsNobody

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
title = "A small lesson"

[[host]]
name = "server"
address = "10.0.2.15/24"

[[step]]
title = "Start"
say = "a server"
expect = ["listen 6000 on 0.0.0.0 by server1", "cpu server1 below 50"]

[[step.process]]
name = "server1"
program = "tcp-server"
args = ["6000", "--bind", "0.0.0.0"]

[[step]]
title = "Scan and kill"
kill = ["server1"]
scan = "6000, 5999"
timeout = 2
expect = [
    "no listen 6000",
    "scan 6000 closed",
    "state time_wait port 6000",
    "established 6000 on 127.0.0.1 from 127.0.0.1 by client1 count 0",
    "backlog 6000 0 on 0.0.0.0",
    "udp 5000 on 127.0.0.1",
    "output server1 contains \\"Client: 127.0.0.1\\"",
    "service 6000 X11",
]

[[step]]
title = "On a host"
expect = ["listen 7000 at server"]

[[step.process]]
name = "hserver"
host = "server"
program = "tcp-server"
args = ["7000"]

[[step]]
title = "Again"
stop = ["hserver"]
expect = ["no listen 7000 at server"]

[[step.process]]
name = "server1"
program = "tcp_server1"
args = ["6000"]
"""


def parse(text: str, tmp_path: Path) -> Lesson:
    return parse_lesson(text, "l.toml", folder=tmp_path, path=tmp_path / "l.toml")


def errors_of(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(LessonError) as info:
        parse(text, tmp_path)
    return list(info.value.errors)


def one_error(text: str, tmp_path: Path) -> str:
    errors = errors_of(text, tmp_path)
    assert len(errors) == 1, errors
    return errors[0]


def test_a_good_lesson(tmp_path: Path) -> None:
    lesson = parse(GOOD, tmp_path)
    assert lesson.title == "A small lesson"
    assert [s.index for s in lesson.steps] == [1, 2, 3, 4]
    assert [h.name for h in lesson.hosts] == ["server"]
    assert lesson.folder == tmp_path.resolve()
    assert lesson.expectation_count == 12
    first, second, third, fourth = lesson.steps
    assert first.say == "a server" and first.processes[0].name == "server1"
    assert first.processes[0].args == ("6000", "--bind", "0.0.0.0")
    assert second.kill == ("server1",) and second.scan == "5999-6000"
    assert second.scan_ports == {5999, 6000} and second.needs_nmap
    assert second.timeout == 2.0
    listen, scan, state, est, backlog, udp, output, service = second.expect
    assert (listen.kind, listen.negated, listen.port) == ("listen", True, 6000)
    assert (scan.kind, scan.port, scan.state) == ("scan", 6000, "closed")
    assert (state.kind, state.state, state.port) == ("state", "TIME_WAIT", 6000)
    assert (est.address, est.peer, est.program, est.count) == (
        "127.0.0.1",
        "127.0.0.1",
        "client1",
        0,
    )
    assert (backlog.port, backlog.count, backlog.address) == (6000, 0, "0.0.0.0")
    assert (udp.kind, udp.address) == ("udp", "127.0.0.1")
    assert output.contains == "Client: 127.0.0.1" and output.name == "server1"
    assert service.service == "X11"
    assert second.uses == ("server1",)
    # A step is marked with what it needs: hosts (a process on one, a sentence at one,
    # a process on one that it stops) and the C compiler.
    assert not first.needs_hosts and third.needs_hosts and fourth.needs_hosts
    assert fourth.needs_compiler and not third.needs_compiler
    assert first.expect[1].above is False and first.expect[1].percent == 50


def test_a_name_may_start_again_once_stopped(tmp_path: Path) -> None:
    lesson = parse(GOOD, tmp_path)
    assert lesson.steps[3].processes[0].program == "tcp_server1"  # server1, killed in step 2


@pytest.mark.parametrize(
    ("sentence", "words"),
    [
        ("listen 70000", "a port is a number from 1 to 65535; 70000 is outside that range"),
        ("listen six", "a port is a number from 1 to 65535, not 'six'"),
        ("listen ６０００", "write it with the digits 0-9"),
        ("lisen 6000", "unknown sentence: it starts with 'lisen'"),
        ("lisen 6000", "did you mean 'listen'?"),
        ("", "is empty"),
        ("no", "'no' needs a sentence after it"),
        ("no backlog 6000 1", "'no' goes only before listen, established, udp, state"),
        ("listen 6000 on localhost", "'localhost' is not an IP address"),
        ("listen 6000 count 2", "'count' does not belong here"),
        ("listen 6000 on 0.0.0.0 on 127.0.0.1", "'on' is given twice"),
        ("listen 6000 by", "'by' needs a value after it"),
        ("established 6000 count -1", "a count is a whole number from 0 to 100000"),
        ("no established 6000 count 1", "takes no count"),
        ("backlog 6000", "is not complete (the form: backlog PORT N"),
        ("state TIMEWAIT port 6000", "did you mean 'TIME_WAIT'?"),
        ("state TIME_WAIT on 6000", "write 'port' before the port number"),
        ("scan 6000 open", "this step scans nothing"),
        ("cpu server9 above 50", "no process named 'server9' is started"),
        ("cpu server1 over 50", "write 'above' or 'below'"),
        ("cpu server1 above lots", "a CPU share is a number of percent"),
        ("output server1 has hello", "write 'contains' after the name"),
        ("output server1 contains ''", "give the text to look for"),
        ("service 6000 two words", "'words' is one word too many"),
        ("listen 6000 at nowhere", "there is no lab host 'nowhere': this lesson has no [[host]]"),
        ("x" * 400, "a sentence is at most 300 characters"),
    ],
)
def test_a_bad_sentence_is_refused_naming_step_and_sentence(
    tmp_path: Path, sentence: str, words: str
) -> None:
    text = f"""
[[step]]
title = "Start it"
expect = [{sentence!r}]

[[step.process]]
name = "server1"
program = "tcp-server"
args = ["6000"]
"""
    error = one_error(text, tmp_path)
    shown = " ".join(sentence.split())[:59]
    assert error.startswith(f'l.toml: step 1 "Start it": expect #1 "{shown}'), error
    assert words in error


def test_every_mistake_of_the_file_is_said_once(tmp_path: Path) -> None:
    text = """
title = 3
color = "red"

[[step]]
title = "One"
expect = ["listen 1", "listen 0", "cpu s1 above 5"]

[[step.process]]
name = "s1"
program = "tcp-server"
args = ["6000", "--bind"]

[[step]]
title = "Two"
stop = ["s9"]
kill = "s1"
scan = "6000-"
tiemout = 3
expect = "listen 6000"

[[step]]
say = "no title"
timeout = -1
"""
    errors = errors_of(text, tmp_path)
    expected = [
        'l.toml: key "color": unknown',
        'l.toml: key "title": must be text, not a whole number',
        'l.toml: step 1 "One": process #1 "s1": key "args": argument --bind: expected one argument',
        'l.toml: step 1 "One": expect #2 "listen 0": a port is a number from 1 to 65535',
        'l.toml: step 2 "Two": key "tiemout": unknown key (did you mean "timeout"?)',
        'l.toml: step 2 "Two": key "stop": \'s9\' is not started by an earlier step',
        'l.toml: step 2 "Two": key "kill": must be a list of process names',
        'l.toml: step 2 "Two": key "scan": ports are numbers from 1 to 65535',
        'l.toml: step 2 "Two": key "expect": must be a list of sentences, like expect = '
        '["listen 6000"]',
        'l.toml: step 3: key "title": missing (every step needs a title)',
        'l.toml: step 3: key "timeout": seconds, more than 0',
    ]
    for start in expected:
        assert sum(e.startswith(start) for e in errors) == 1, (start, errors)
    # s1's table was refused: the sentence naming it is not refused a second time.
    assert len(errors) == len(expected), errors


def test_names_follow_the_steps(tmp_path: Path) -> None:
    text = """
[[step]]
title = "A"
[[step.process]]
name = "s1"
program = "tcp-server"
args = ["6000"]

[[step]]
title = "B"
[[step.process]]
name = "s1"
program = "tcp-server"
args = ["6001"]

[[step]]
title = "C"
kill = ["s1"]

[[step]]
title = "D"
stop = ["s1"]
expect = ["output s1 contains x"]
"""
    errors = errors_of(text, tmp_path)
    assert len(errors) == 2, errors
    assert errors[0].startswith(
        'l.toml: step 2 "B": process #1 "s1": key "name": a process of that name is still '
        "running from an earlier step"
    )
    # Killed in step 3: step 4 may not stop it again, but may still read its output.
    assert errors[1].startswith(
        'l.toml: step 4 "D": key "stop": \'s1\' was stopped or killed by an earlier step'
    )


def test_a_scan_sentence_names_a_scanned_port(tmp_path: Path) -> None:
    text = '[[step]]\ntitle = "S"\nscan = "6000"\nexpect = ["scan 6001 open", "scan 6000 opn"]\n'
    errors = errors_of(text, tmp_path)
    assert errors[0].endswith("6001 is not among the ports this step scans"), errors
    assert "open, closed or filtered, not 'opn' (did you mean 'open'?)" in errors[1]


def test_the_file_as_a_whole(tmp_path: Path) -> None:
    assert "no [[step]] table" in one_error('title = "x"\n', tmp_path)
    assert "two brackets" in one_error('[step]\ntitle = "x"\n', tmp_path)
    assert "not valid TOML" in one_error("[[step]\n", tmp_path)
    steps = '[[step]]\ntitle = "x"\n' * (MAX_STEPS + 1)
    assert f"a lesson has at most {MAX_STEPS}" in one_error(steps, tmp_path)
    many = ", ".join(['"listen 1"'] * (MAX_SENTENCES + 1))
    assert f"a step has at most {MAX_SENTENCES}" in one_error(
        f'[[step]]\ntitle = "x"\nexpect = [{many}]\n', tmp_path
    )
    big = "# " + "x" * lesson_mod.MAX_BYTES + '\n[[step]]\ntitle = "x"\n'
    assert "at most 256 KiB" in one_error(big, tmp_path)
    # The [[host]] tables are checked as a scenario's, in the same words.
    host = '[[host]]\nname = "server"\naddress = "10.0.2.15"\n[[step]]\ntitle = "x"\n'
    assert 'host #1 "server": key "address"' in one_error(host, tmp_path)


def test_load_lesson_says_why_a_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(LessonError) as info:
        load_lesson(tmp_path / "missing.toml")
    assert info.value.errors[0].endswith(
        "no such file (the lessons that come with the observatory: session4)"
    )
    with pytest.raises(LessonError, match="is a folder"):
        load_lesson(tmp_path)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe[[step]]")
    with pytest.raises(LessonError, match="not a text file in UTF-8"):
        load_lesson(binary)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (lesson_mod.MAX_BYTES + 1))
    with pytest.raises(LessonError, match="a lesson file is at most 256 KiB"):
        load_lesson(big)


def test_a_command_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    text = """
[[step]]
title = "Run it"
[[step.process]]
name = "nc"
command = ["no-such-program-here", "-v"]
"""
    error = one_error(text, tmp_path)
    assert error.startswith('l.toml: step 1 "Run it": process #1 "nc": key "command"'), error


def test_the_shipped_lesson_is_found_by_path_and_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lessons_dir() == ROOT / "lessons"
    monkeypatch.chdir(ROOT)
    assert find_lesson("lessons/session4.toml") == Path("lessons/session4.toml")
    monkeypatch.chdir(tmp_path)
    assert find_lesson("session4") == ROOT / "lessons" / "session4.toml"
    assert find_lesson("nothing-like-it") == Path("nothing-like-it")
    lesson = load_lesson(find_lesson("session4"))
    assert len(lesson.steps) >= 12 and lesson.expectation_count >= 12
    # Every experiment of LAB.md has its step, in the lecture's order.
    numbers = [int(n) for s in lesson.steps for n in s.title.split(":")[0].split() if n.isdigit()]
    assert sorted(set(numbers)) == list(range(1, 14)) and numbers == sorted(numbers)
    needs = {s.index for s in lesson.steps if s.needs_hosts}
    assert needs and all(
        "Experiment 9" in s.title or "Experiment 10" in s.title
        for s in lesson.steps
        if s.index in needs
    )


def test_skip_reasons_are_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lesson = parse(GOOD, tmp_path)
    first, second, third, fourth = lesson.steps
    assert skip_reason(first, None) is None
    why = skip_reason(third, None, no_network="Lab hosts need root")
    assert why == (
        "it needs the lab hosts (network namespaces), and there are none: Lab hosts need root"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # no nmap, no compiler
    monkeypatch.delenv("CC", raising=False)
    assert skip_reason(second, None) == (
        "it scans with nmap, and nmap is not installed: install it with `sudo apt install nmap`"
    )
    assert "C compiler" in (compiler_problem() or "")
    fourth_network = object()
    why = skip_reason(fourth, fourth_network)  # type: ignore[arg-type]
    assert why is not None and why.startswith("it needs the lecture's C programs, and ")


def test_a_cache_folder_that_cannot_be_written_is_said(as_nobody: AsNobody) -> None:
    # nobody's HOME (the fixture's copy of the app) is not nobody's to write: the C
    # programs could not be compiled into ~/.cache, and the reason says so.
    code = "from app.core.lesson_run import compiler_problem as p; print(p())"
    done = as_nobody("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("is not writable for this user"), done.stdout
