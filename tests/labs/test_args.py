"""Arguments: refused in one line of words, before anything starts."""

from __future__ import annotations

import importlib

import pytest

from app.labs import PROGRAMS, LabUsageError, validate
from tests.labs.procs import one_error_line, run_lab

GOOD = {
    "tcp-server": [
        "6000",
        "--bind",
        "0.0.0.0",
        "--backlog",
        "3",
        "--handler",
        "echo",
        "--concurrent",
    ],
    "tcp-client": [
        "127.0.0.1",
        "hello",
        "6000",
        "--count",
        "2",
        "--hold",
        "1.5",
        "--busy",
        "--bind",
        "127.0.0.1",
        "--timeout",
        "2",
    ],
    "udp-server": ["6000", "--bind", "::1"],
    "udp-client": ["::1", "hello", "6000", "--count", "3", "--hold", "0", "--timeout", "0.5"],
}

BAD = [
    ("tcp-server", ["70000"], "port must be a number from 1 to 65535, not 70000"),
    ("tcp-server", ["http"], "port must be a number from 1 to 65535, not 'http'"),
    ("tcp-server", ["0"], "port must be a number from 1 to 65535, not 0"),
    ("tcp-server", ["-5"], "port must be a number from 1 to 65535, not -5"),
    ("tcp-server", [], "the following arguments are required: PORT"),
    (
        "tcp-server",
        ["6000", "--bind", "localhost"],
        "'localhost' is not an IP address: write it as numbers, like 127.0.0.1 or ::1 "
        "(names such as localhost are not looked up)",
    ),
    ("tcp-server", ["6000", "--bind", "999.1.1.1"], "'999.1.1.1' is not an IP address"),
    (
        "tcp-server",
        ["6000", "--backlog", "many"],
        "--backlog must be a whole number from 0 to 65535, not 'many'",
    ),
    ("tcp-server", ["6000", "--handler", "spin"], "invalid choice: 'spin'"),
    ("tcp-client", ["127.0.0.1", "hello"], "the following arguments are required: PORT"),
    ("tcp-client", ["example.org", "hello", "80"], "'example.org' is not an IP address"),
    (
        "tcp-client",
        ["127.0.0.1", "hello", "http"],
        "port must be a number from 1 to 65535, not 'http'",
    ),
    (
        "tcp-client",
        ["127.0.0.1", "hi", "6000", "--count", "0"],
        "--count must be a whole number from 1 to 1000000, not 0",
    ),
    (
        "tcp-client",
        ["127.0.0.1", "hi", "6000", "--hold", "-1"],
        "--hold must be a number of seconds, 0 or more, not -1",
    ),
    (
        "tcp-client",
        ["127.0.0.1", "hi", "6000", "--timeout", "0"],
        "--timeout must be a number of seconds, more than 0, not 0",
    ),
    ("udp-server", ["65536"], "port must be a number from 1 to 65535, not 65536"),
    ("udp-client", ["1.2.3", "hi", "6000"], "'1.2.3' is not an IP address"),
    (
        "udp-client",
        ["127.0.0.1", "hi", "6000", "--hold", "nan"],
        "--hold must be a number of seconds, 0 or more, not 'nan'",
    ),
]


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_good_arguments_pass_validation(program: str) -> None:
    validate(program, GOOD[program])
    args = importlib.import_module(PROGRAMS[program]).build_parser().parse_args(GOOD[program])
    assert args.port == 6000  # checked values come back converted


def test_parsed_values_are_converted() -> None:
    from app.labs import tcp_client, tcp_server

    server = tcp_server.build_parser().parse_args(["6000"])
    assert (server.port, server.bind, server.backlog, server.handler, server.concurrent) == (
        6000,
        "127.0.0.1",
        5,
        "hold",
        False,
    )
    client = tcp_client.build_parser().parse_args(GOOD["tcp-client"])
    assert (client.ip, client.message, client.count, client.hold, client.timeout) == (
        "127.0.0.1",
        "hello",
        2,
        1.5,
        2.0,
    )
    assert tcp_server.build_parser().parse_args(["6000", "--bind", "::0001"]).bind == "::1"


@pytest.mark.parametrize(("program", "argv", "words"), BAD)
def test_bad_arguments_raise_one_line(program: str, argv: list[str], words: str) -> None:
    with pytest.raises(LabUsageError) as caught:
        validate(program, argv)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message


def test_unknown_program_is_refused() -> None:
    with pytest.raises(LabUsageError, match="no built-in program 'tcp_server1'"):
        validate("tcp_server1", ["6000"])


def test_main_in_process_returns_1_and_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from app.labs import tcp_server

    assert tcp_server.main(["http"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "tcp-server: port must be a number from 1 to 65535, not 'http'\n"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from app.labs import udp_client

    assert udp_client.main(["--help"]) == 0
    assert "usage: udp-client IP MESSAGE PORT" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["70000"], "port must be a number from 1 to 65535, not 70000"),
        (["http"], "port must be a number from 1 to 65535, not 'http'"),
    ],
)
def test_run_alone_bad_port_is_one_line_exit_1(argv: list[str], words: str) -> None:
    assert one_error_line(run_lab("tcp-server", *argv), "tcp-server") == words


def test_validate_refuses_help_without_printing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LabUsageError, match="would only print its help"):
        validate("tcp-server", ["6000", "--help"])
    assert capsys.readouterr().out == ""
