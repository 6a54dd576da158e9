"""Endianness explainer: the lecture's 8 bytes, read both ways, checked by hand."""

from __future__ import annotations

import json
import sys

import pytest

from app.core.endian import (
    DEFAULT_BYTES,
    MAX_BYTES,
    EndianError,
    parse_bytes,
    read_words,
    render_lines,
)
from tests.conftest import observatory


def test_default_is_the_lecture_sequence() -> None:
    assert bytes([0x47, 0xEF, 0x15, 0x2A, 0x89, 0x37, 0xB4, 0x33]) == DEFAULT_BYTES


def test_two_byte_words_match_the_lecture_by_hand() -> None:
    table = read_words().table(2)
    # The lecture: "2 BYTES DATA SEQUENCE : 0x47EF-0X152A-0X8937-0XB433" (big-endian).
    assert [w.big for w in table.words] == [0x47EF, 0x152A, 0x8937, 0xB433]
    # Little-endian swaps the two bytes of each word.
    assert [w.little for w in table.words] == [0xEF47, 0x2A15, 0x3789, 0x33B4]
    assert table.sequence("big") == "0x47EF-0x152A-0x8937-0xB433"
    assert table.sequence("little") == "0xEF47-0x2A15-0x3789-0x33B4"
    assert [w.offset for w in table.words] == [0, 2, 4, 6]
    assert table.leftover == b""


def test_four_byte_words_match_the_lecture_by_hand() -> None:
    table = read_words().table(4)
    # The lecture: "4 BYTES DATA SEQUENCE: 0x47EF152A-0X8937B433" (big-endian).
    assert [w.big_hex for w in table.words] == ["0x47EF152A", "0x8937B433"]
    assert [w.little_hex for w in table.words] == ["0x2A15EF47", "0x33B43789"]
    assert table.words[0].big == 1206850858
    assert table.words[0].little == 706080583


def test_one_byte_words_have_no_order() -> None:
    table = read_words().table(1)
    assert table.same_both_ways
    assert table.sequence("big") == "0x47-0xEF-0x15-0x2A-0x89-0x37-0xB4-0x33"
    assert not read_words().table(2).same_both_ways


def test_palindromic_words_say_why_both_readings_agree() -> None:
    report = read_words(bytes([0x7F, 0, 0, 0x7F]), byteorder="little")
    note = report.table(4).palindrome_note
    assert note is not None
    assert "reads the same both ways (a byte palindrome)" in note
    assert report.table(2).palindrome_note is None  # 7F 00 and 00 7F swap
    assert read_words().table(1).palindrome_note is None  # one byte: said otherwise
    text = "\n".join(render_lines(report))
    assert "every 4-byte word here reads the same both ways" in text
    assert "big-endian too" not in text


def test_leftover_bytes_do_not_fill_a_word() -> None:
    report = read_words(bytes([1, 2, 3, 4, 5]))
    assert [w.big for w in report.table(2).words] == [0x0102, 0x0304]
    assert report.table(2).leftover == b"\x05"
    assert report.table(4).leftover == b"\x05"
    assert read_words(b"\x01").table(4).words == ()


def test_host_and_network_lines() -> None:
    little = read_words(byteorder="little")
    assert "little-endian" in little.host_line and "least significant" in little.host_line
    assert "big-endian (network byte order)" in little.network_line
    big = read_words(byteorder="big")
    assert "big-endian" in big.host_line and "most significant" in big.host_line
    assert read_words().host_byteorder == sys.byteorder


@pytest.mark.parametrize(
    "typed",
    [
        "47 EF 15 2A 89 37 B4 33",
        "0x47-0xEF-0X15-0X2A-0X89-0X37-0XB4-0X33",  # the lecture's own spelling
        "47EF152A8937B433",
        "0x47EF152A 0x8937B433",
        "47,ef,15,2a,89,37,b4,33",
        ["47", "EF", "15", "2A", "89", "37", "B4", "33"],
        "[0]=47,[1]=EF,[2]=15,[3]=2A,[4]=89,[5]=37,[6]=B4,[7]=33,",
    ],
)
def test_parse_accepts_the_ways_people_write_bytes(typed: str | list[str]) -> None:
    assert parse_bytes(typed) == DEFAULT_BYTES


def test_single_digit_is_one_byte() -> None:
    assert parse_bytes("[0]=2,[1]=0,[2]=3,[3]=E8,") == bytes([2, 0, 3, 0xE8])
    assert parse_bytes("7 0x0") == bytes([7, 0])


@pytest.mark.parametrize(
    "typed",
    ["47E", "0x47E", "4G", "zz", "0x", "", "   ", "[0]=47,[2]=EF,", "[0]=123,", "[0]=47, 99"],
)
def test_parse_rejects_odd_or_invalid_hex(typed: str) -> None:
    with pytest.raises(EndianError):
        parse_bytes(typed)


def test_parse_rejects_too_many_bytes() -> None:
    with pytest.raises(EndianError, match="too many"):
        parse_bytes("00" * (MAX_BYTES + 1))


def test_bad_word_size() -> None:
    with pytest.raises(EndianError):
        read_words(b"\x01", sizes=(0,))


def test_text_table_marks_this_machine() -> None:
    lines = render_lines(read_words(byteorder="little"))
    text = "\n".join(lines)
    assert "little-endian <- this machine" in text
    assert "0x47EF = 18415" in text and "0xEF47 = 61255" in text
    row = next(line for line in lines if line.strip().startswith("0       47 EF  "))
    assert row.index("0x47EF") < row.index("0xEF47")  # big and little side by side


def test_json_round_trip() -> None:
    data = read_words().to_json()
    json.dumps(data)
    tables = data["tables"]
    assert isinstance(tables, list)
    assert tables[1]["big_sequence"] == "0x47EF-0x152A-0x8937-0xB433"


def test_cli_default() -> None:
    out = observatory("endian")
    assert out.returncode == 0, out.stderr
    assert "0x47EF-0x152A-0x8937-0xB433" in out.stdout
    assert "0xEF47-0x2A15-0x3789-0x33B4" in out.stdout
    assert f"This machine is {sys.byteorder}-endian" in out.stdout
    assert "TCP/IP is big-endian" in out.stdout


def test_cli_lecture_spelling_and_json() -> None:
    out = observatory("endian", "0x03-0xE8", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (word,) = data["tables"][1]["words"]
    assert (word["big"], word["little"]) == (1000, 59395)


@pytest.mark.parametrize("args", [("47E",), ("4G",), ("0x",)])
def test_cli_bad_input_is_one_line_exit_2(args: tuple[str, ...]) -> None:
    out = observatory("endian", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("observatory endian: ")
