"""Ports and numbers are ASCII digits only: ``٧٤٠٠`` (Arabic-Indic) and ``７４００`` (full-width)
are refused in words at every entry point, where ``int()`` would have taken them as 7400.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.procs import LaunchError, ProcessManager
from app.core.scenario import ScenarioError, parse_scenario
from app.core.targets import PortsError, parse_ports
from app.labs import LabUsageError, validate, whole_number
from app.labs._args import check_port, int_checker, seconds_checker
from tests.conftest import free_port, observatory
from tests.labs.procs import one_error_line, run_lab

pytestmark = pytest.mark.timeout(60)

ARABIC = "٧٤٠٠"  # 7400 in Arabic-Indic digits
FULL_WIDTH = "７４００"  # 7400 in full-width digits
HINT = "(write it with the digits 0-9)"


@pytest.mark.parametrize("text", [ARABIC, FULL_WIDTH, "6_000", "+6000", "", " ", "٦٠٠٠"])
def test_whole_number_takes_ascii_digits_only(text: str) -> None:
    assert whole_number(text) is None


def test_whole_number_reads_ascii_digits() -> None:
    assert whole_number(" 6000 ") == 6000
    assert whole_number("0") == 0


@pytest.mark.parametrize("text", [ARABIC, FULL_WIDTH])
def test_check_port_refuses_other_digits_in_words(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_port(text)
    assert str(caught.value) == f"port must be a number from 1 to 65535, not {text!r} {HINT}"


def test_int_and_seconds_checkers_refuse_other_digits() -> None:
    with pytest.raises(ValueError, match="--backlog must be a whole number from 0 to 65535"):
        int_checker("--backlog", 0, 65535)("٥")
    with pytest.raises(ValueError, match="--hold must be a number of seconds"):
        seconds_checker("--hold", allow_zero=True)("٥")
    with pytest.raises(ValueError, match="--hold must be a number of seconds"):
        seconds_checker("--hold", allow_zero=True)("1_0")
    assert seconds_checker("--hold", allow_zero=True)("0.5") == 0.5


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("tcp-server", [ARABIC]),
        ("tcp-client", ["127.0.0.1", "hi", FULL_WIDTH]),
        ("udp-server", [ARABIC]),
        ("udp-client", ["127.0.0.1", "hi", ARABIC]),
    ],
)
def test_every_lab_program_refuses_them(program: str, args: list[str]) -> None:
    with pytest.raises(LabUsageError, match="port must be a number from 1 to 65535"):
        validate(program, args)


def test_a_real_tcp_server_refuses_them_and_exits_1() -> None:
    words = one_error_line(run_lab("tcp-server", ARABIC), "tcp-server")
    assert words == f"port must be a number from 1 to 65535, not {ARABIC!r} {HINT}"


def test_the_launch_dialog_path_refuses_them() -> None:
    with ProcessManager(register_atexit=False) as manager, pytest.raises(LaunchError) as caught:
        manager.launch_builtin("server1", "tcp-server", [ARABIC])
    assert str(caught.value) == f"port must be a number from 1 to 65535, not {ARABIC!r} {HINT}"


def test_a_scenario_refuses_them(tmp_path: Path) -> None:
    text = f'[[process]]\nname = "server1"\nprogram = "tcp-server"\nargs = ["{ARABIC}"]\n'
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.toml", folder=tmp_path)
    assert caught.value.errors == (
        f's.toml: process #1 "server1": key "args": port must be a number from 1 to 65535, '
        f"not {ARABIC!r} {HINT}",
    )


@pytest.mark.parametrize("text", [ARABIC, f"6000-{FULL_WIDTH}", f"22,{ARABIC}"])
def test_scan_port_lists_refuse_them(text: str) -> None:
    with pytest.raises(PortsError) as caught:
        parse_ports(text)
    assert HINT in str(caught.value)


def test_scan_command_refuses_them() -> None:
    done = observatory("scan", "127.0.0.1", "-p", ARABIC)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert f"not {ARABIC!r} {HINT}" in done.stderr


def test_snapshot_port_refuses_them() -> None:
    done = observatory("snapshot", "--port", ARABIC)
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"observatory snapshot: argument --port: a port is a number from 1 to 65535, "
        f"not {ARABIC!r} {HINT}"
    )


def test_close_refuses_them() -> None:
    port = free_port()
    done = observatory("close", f"127.0.0.1:{ARABIC}", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"not {ARABIC!r}" in done.stderr
    assert "Traceback" not in done.stderr


def test_lab_run_refuses_them() -> None:
    done = observatory("lab", "run", "tcp-server", ARABIC, timeout=15)
    assert done.returncode != 0
    assert "port must be a number from 1 to 65535" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "argv", [("watch", "--port", FULL_WIDTH), ("serve", "--port", ARABIC), ("--interval", "٠.٥")]
)
def test_every_other_port_and_seconds_flag_refuses_them(argv: tuple[str, ...]) -> None:
    """The shared argparse types (app.cliutil) behind watch/serve --port and --interval."""
    done = observatory(*argv, timeout=15)
    assert done.returncode == 2, done.stdout
    assert HINT in done.stderr and "Traceback" not in done.stderr
