"""The limits a classroom meets, each named in its refusal (issue 16): a scenario's size,
process count, host count, name length and delay; the bytes of the endianness explainer;
a scan's target and port list; the class view's machines and files; and numbers of
thousands of digits, which int() itself refuses with words of its own."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from app.core import classroom, endian, scenario, targets
from app.core.sockaddr import SockaddrError, parse_address, parse_port
from app.labs import whole_number
from tests.property.strategies import assert_words

SERVER = '[[process]]\nname = "s{n}"\nprogram = "tcp-server"\nargs = ["{port}"]\n'


def mistakes(content: str) -> list[str]:
    with pytest.raises(scenario.ScenarioError) as caught:
        scenario.parse_scenario(content, "s.toml", folder="/tmp")
    for line in caught.value.errors:
        assert_words(line)
    return list(caught.value.errors)


def servers(count: int) -> str:
    return "\n".join(SERVER.format(n=n, port=10000 + n) for n in range(count))


def test_a_scenario_starts_at_most_200_processes() -> None:
    assert len(scenario.parse_scenario(servers(200), "s.toml", folder="/tmp").entries) == 200
    assert mistakes(servers(201)) == [
        "s.toml: 201 [[process]] tables: a scenario starts at most 200 processes"
    ]


def test_5000_servers_are_refused_before_one_is_checked() -> None:
    """The issue's: a scenario of 5,000 servers was started without a word."""
    content = "".join(f'[[process]]\nname="s{n}"\nprogram="tcp-server"\n' for n in range(5000))
    started = time.monotonic()
    (line,) = mistakes(content)
    assert "5000 [[process]] tables" in line and "at most 200" in line
    assert time.monotonic() - started < 5  # refused at once: no 5,000 argument checks


def test_a_scenario_file_is_at_most_256_kib(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text(servers(1) + "# " + "x" * (256 * 1024) + "\n")
    (line,) = mistakes(big.read_text())
    assert "a scenario file is at most 256 KiB" in line
    with pytest.raises(scenario.ScenarioError, match="at most 256 KiB"):
        scenario.load_scenario(big)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_an_endless_file_is_refused_without_reading_it_all(path: str) -> None:
    started = time.monotonic()
    with pytest.raises(scenario.ScenarioError, match="at most 256 KiB"):
        scenario.load_scenario(path)
    assert time.monotonic() - started < 5


def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    done: list[BaseException] = []

    def load() -> None:
        try:
            scenario.load_scenario(fifo)
        except scenario.ScenarioError as exc:
            done.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "load_scenario waited for a writer"
    assert done and "no [[process]] table" in str(done[0])


def test_a_folder_or_a_nul_is_said_in_words(tmp_path: Path) -> None:
    with pytest.raises(scenario.ScenarioError, match="is a folder"):
        scenario.load_scenario(tmp_path)
    with pytest.raises(scenario.ScenarioError, match="NUL"):
        scenario.load_scenario("a\0b.toml")


def test_at_most_16_hosts() -> None:
    hosts = "".join(f'[[host]]\nname = "h{n}"\naddress = "10.0.2.{n + 1}/24"\n' for n in range(17))
    lines = mistakes(hosts + servers(1))
    assert "17 [[host]] tables: a scenario holds at most 16 hosts" in lines[0]


def test_a_long_name_is_named_by_its_start_and_its_length() -> None:
    name = "a" * 5000
    (line,) = mistakes(SERVER.replace("s{n}", name).format(port=7000))
    assert line.startswith(f's.toml: process #1 "{"a" * 37}...": key "name": 5000 characters')
    assert "1 to 40" in line and len(line) < 300
    mistakes(SERVER.replace("s{n}", "a" * 41).format(port=7000))  # 41: refused too
    assert scenario.parse_scenario(
        SERVER.replace("s{n}", "a" * 40).format(port=7000), "s.toml", folder="/tmp"
    ).names == ["a" * 40]


def test_a_delay_of_more_than_an_hour() -> None:
    content = servers(1) + "delay = 1e300\n"
    (line,) = mistakes(content)
    assert 'key "delay": must be at most 3600 seconds (an hour), not 1e+300' in line


def test_what_a_file_says_is_quoted_short() -> None:
    """A program, a key, a host or an address of 20,000 characters: one short line each."""
    huge = "x" * 20000
    for table in (
        f'[[process]]\nname = "a"\nprogram = "{huge}"\n',
        f'[[process]]\nname = "a"\nprogram = "tcp-server"\nargs = ["1"]\n{huge} = 1\n',
        f'[[process]]\nname = "a"\nprogram = "tcp-server"\nargs = ["1"]\nhost = "{huge}"\n',
        f'[[process]]\nname = "a"\ncommand = ["/{huge}"]\n',
        f'[[host]]\nname = "h"\naddress = "{huge}"\n' + servers(1),
        f"{huge} = 1\n" + servers(1),
    ):
        for line in mistakes(table):
            assert len(line) < 600, line[:200]


def test_the_endianness_explainer_takes_64_bytes() -> None:
    assert len(endian.parse_bytes("00 " * 64)) == 64
    with pytest.raises(
        endian.EndianError, match="65 bytes is too many to lay out: give at most 64"
    ):
        endian.parse_bytes("00 " * 65)
    with pytest.raises(endian.EndianError, match="at most 1024 characters"):
        endian.parse_bytes("0" * 5000)
    with pytest.raises(endian.EndianError, match="out of order"):
        endian.parse_bytes("[" + "1" * 900 + "]=47")
    with pytest.raises(endian.EndianError, match="not hexadecimal"):  # [٠]: no index of 0-9
        endian.parse_bytes("[٠]=47")


def test_scan_targets_and_port_lists() -> None:
    with pytest.raises(targets.TargetError, match="a target is at most 300"):
        targets.parse_target("a" * 301)
    with pytest.raises(targets.PortsError, match="at most 1000"):
        targets.parse_ports("1," * 600)
    with pytest.raises(targets.PortsError, match="outside that range") as caught:
        targets.parse_ports("9" * 900)  # int() of 900 digits is fine; no port is
    assert len(str(caught.value)) < 120
    for digits in ("٧٤٠٠", "７４００"):
        with pytest.raises(targets.PortsError, match="write it with the digits 0-9"):
            targets.parse_ports(digits)
    assert targets.parse_ports("0" * 800 + "80") == "80"


def test_numbers_of_thousands_of_digits() -> None:
    """int() refuses more than 4,300 digits with a ValueError of its own words."""
    assert whole_number("9" * 5000) is None and whole_number("0" * 5000) == 0
    assert whole_number("0" * 5000 + "7") == 7
    with pytest.raises(SockaddrError, match="too big"):
        parse_port("1" * 5000)
    with pytest.raises(SockaddrError, match="32-bit interface index"):
        parse_address("fe80::1%" + "1" * 5000)
    with pytest.raises(SockaddrError, match="not an interface name"):
        parse_address("fe80::1%a\0b")


def test_the_class_view(tmp_path: Path) -> None:
    many = [f"10.0.{n // 250}.{n % 250 + 1}:9107" for n in range(257)]
    with pytest.raises(classroom.TargetError, match="at most 256"):
        classroom.parse_targets(many)
    big = tmp_path / "room.txt"
    big.write_text("127.0.0.1:9107\n" * 5000)
    for path in (str(big), "/dev/zero"):
        with pytest.raises(classroom.TargetError, match="too big: at most 64 KiB"):
            classroom.read_hosts_file(path)
        with pytest.raises(classroom.TargetError, match="too big: at most 64 KiB"):
            classroom.read_token(path)
    with pytest.raises(classroom.TargetError) as caught:
        classroom.parse_target("[::1]:" + "9" * 5000)
    assert len(str(caught.value)) < 200


def test_lesson_run_timeout_is_a_lesson_files_limit() -> None:
    from app.commands import lesson as command
    from app.core import lesson

    assert command.MAX_TIMEOUT == lesson.MAX_TIMEOUT
