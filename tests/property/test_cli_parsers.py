"""Every flag and argument of every command, given what a classroom types, in process.

``observatory``'s own parser (app.cli.build_parser) reads ``COMMAND --flag VALUE``: it
takes the value, or exits 2 after one terminal-safe line of words on stderr. Commands that
only compute (sockaddr, endian, lab check) are run through app.cli.main too; the parsers
of the commands that act (close, class) are given the same text. The subprocess tests of
the real ``python -m app`` are in tests/e2e/test_bad_input_cli.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import cliutil
from app.cli import build_parser, main
from app.cliutil import UsageError
from app.commands.close import parse_end
from app.commands.replay import _speed
from tests.property.strategies import (
    FAST,
    SLOW,
    assert_words,
    no_control,
    refused_or,
    tally,
    text,
    words,
)

# (the words before the flag, the flag, what else the command needs after it)
FLAGS = [
    ([], "--interval", []),
    ([], "--theme", []),
    ([], "--scenario", []),
    ([], "--lesson", []),
    (["snapshot"], "--port", []),
    (["snapshot"], "--host", []),
    (["watch"], "--port", []),
    (["watch"], "--duration", []),
    (["scan"], "-p", ["127.0.0.1"]),
    (["scan"], "--type", ["127.0.0.1"]),
    (["scan"], "--from", ["127.0.0.1"]),
    (["scan"], "--timeout", ["127.0.0.1"]),
    (["serve"], "--host", []),
    (["serve"], "--port", []),
    (["agent"], "--host", []),
    (["agent"], "--port", []),
    (["agent"], "--token-file", []),
    (["class"], "--hosts-file", []),
    (["class"], "--token-file", []),
    (["class"], "--interval", []),
    (["class"], "--timeout", []),
    (["class"], "--theme", []),
    (["replay"], "--speed", ["latest"]),
    (["replay"], "--theme", ["latest"]),
    (["lesson", "run"], "--timeout", ["session4"]),
    (["record", "export"], "--format", ["x.jsonl"]),
    (["record", "export"], "--out", ["x.jsonl"]),
]
# Commands whose positional arguments are the user's text.
POSITIONAL = [
    ["sockaddr", "ADDRESS", "PORT"],
    ["close", "LOCAL", "REMOTE"],
    ["endian", "BYTES"],
    ["scan", "TARGET"],
    ["class", "TARGET"],
    ["lab", "run", "PROGRAM", "ARGS"],
    ["lab", "check", "FILE"],
    ["lab", "up", "FILE"],
    ["lesson", "check", "FILE"],
    ["replay", "RECORD"],
    ["record", "export", "FILE"],
]


PARSER = build_parser()  # one for every example: it keeps nothing from one parse to the next


def parse(argv: list[str]) -> argparse.Namespace | None:
    """The namespace, or None after argparse's one line on stderr (exit 2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return PARSER.parse_args(argv)
        except SystemExit as exc:
            said = err.getvalue()
            if exc.code == 0:  # -h in the value's place: the help
                assert "-h" in argv or "--help" in argv
                return None
            assert exc.code == 2, (argv, exc.code, said)
    lines = said.splitlines()
    assert len(lines) == 1, said[:500]
    no_control(lines[0])
    assert_words(lines[0])
    return None


@pytest.mark.parametrize(
    ("before", "flag", "after"), FLAGS, ids=[" ".join([*b, f]) for b, f, _ in FLAGS]
)
@SLOW
@given(value=text)
def test_every_flag(before: list[str], flag: str, after: list[str], value: str) -> None:
    tally(f"observatory {' '.join(before)} {flag} VALUE")
    if not value.startswith("-"):
        given = [flag, value]
    else:  # as a user must write a value that starts with '-'
        given = [f"{flag}={value}" if flag.startswith("--") else flag + value]
    parse([*before, *given, *after])


@pytest.mark.parametrize("command", POSITIONAL, ids=lambda c: " ".join(c))
@SLOW
@given(values=st.lists(text, min_size=1, max_size=3))
def test_every_positional_argument(command: list[str], values: list[str]) -> None:
    tally(f"observatory {' '.join(command)}")
    fixed = [w for w in command if not w.isupper()]
    parse([*fixed, "--", *values] if fixed[0] not in ("lab",) else [*fixed, *values])


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@FAST
@given(address=text, port=text)
def test_sockaddr_command(address: str, port: str) -> None:
    tally("observatory sockaddr ADDRESS PORT (run)")
    code, out, err = run_main(["sockaddr", "--", address, port])
    if code == 0:
        assert out.startswith("[0]=")
    else:
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1
        no_control(err.strip())
        assert_words(err.strip())


@FAST
@given(typed=words)
def test_endian_command(typed: list[str]) -> None:
    tally("observatory endian BYTES (run)")
    code, out, err = run_main(["endian", "--", *typed])
    if code != 0:
        assert code == 2 and out == ""
        no_control(err.strip())
        assert_words(err.strip())


@SLOW
@given(path=text)
def test_lab_check_of_any_path(path: str) -> None:
    tally("observatory lab check FILE (run)")
    code, out, err = run_main(["lab", "check", "--", path])
    assert code in (0, 2)
    no_control(out + err, allowed="\n")
    if code == 2:
        assert "nothing was started" in err.splitlines()[-1]


@FAST
@given(typed=text)
def test_close_ends(typed: str) -> None:
    refused_or("close.parse_end", lambda: parse_end(typed, "LOCAL_ADDR:PORT"), UsageError)


@FAST
@given(typed=text)
def test_replay_speed(typed: str) -> None:
    refused_or("replay --speed", lambda: _speed(typed), argparse.ArgumentTypeError)


@FAST
@given(typed=text)
def test_argparse_types(typed: str) -> None:
    checks: list[tuple[str, Callable[[str], object]]] = [
        ("cliutil.port_number", cliutil.port_number),
        ("cliutil.positive_seconds", cliutil.positive_seconds),
        ("cliutil.interval_seconds", cliutil.interval_seconds),
        ("cliutil.lab_host_name", cliutil.lab_host_name),
        ("cliutil.listen_address", cliutil.listen_address),
    ]
    for name, check in checks:
        value = refused_or(name, partial(check, typed), argparse.ArgumentTypeError)
        if isinstance(value, float):
            assert 0 < value <= cliutil.MOST_SECONDS


@FAST
@given(typed=text)
def test_usage_errors_are_terminal_safe(typed: str) -> None:
    tally("cliutil.UsageError")
    said = str(UsageError(f"not {typed}"))
    no_control(said)
    assert len(said) <= cliutil.MAX_MESSAGE
