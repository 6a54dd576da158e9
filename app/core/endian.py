"""Endianness: the same bytes read as 1-, 2- and 4-byte words, both ways.

The lecture's example is the byte sequence ``47 EF 15 2A 89 37 B4 33``: as
2-byte words it is ``0x47EF 0x152A 0x8937 0xB433`` to a big-endian reader
(Motorola, TCP/IP) and ``0xEF47 0x2A15 0x3789 0x33B4`` to a little-endian one
(Intel, DEC). :func:`read_words` computes both readings as data a UI can lay
out; :func:`render_lines` is the plain-text rendering of that data.

Input is what a student types: ``47 EF 15 2A``, the lecture's
``0x47-0xEF-0X15-0X2A``, a run like ``47EF152A``, or even a pasted
``[0]=2,[1]=0,[2]=3,[3]=E8,`` line from ``observatory sockaddr``. Each byte
is written with two hex digits, or one (``7`` = ``07``); a run with an odd
number of digits (``47E``) is refused: it could be ``04 7E`` or ``47 0E``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

ByteOrder = Literal["little", "big"]

HOST_BYTEORDER: ByteOrder = "little" if sys.byteorder == "little" else "big"

# The lecture's slide: "1 BYTE DATA SEQUENCE: 0x47-0xEF-0X15-0X2A-0X89-0X37-0XB4-0X33".
DEFAULT_BYTES = bytes.fromhex("47EF152A8937B433")
DEFAULT_SIZES = (1, 2, 4)
MAX_BYTES = 64
# The longest text read: MAX_BYTES bytes each written as "[63]=EF," (8 characters), with room.
MAX_TEXT = 1024
SHOWN = 40  # the most of a typed piece a message quotes

_SEPARATORS = re.compile(r"[\s,;:\-]+")
# [0-9], not \d: \d matches every script's digits (Arabic-Indic, full-width...).
_LECTURE_DUMP = re.compile(r"\[([0-9]+)\]=([^,\s]*)")
_HEX = re.compile(r"[0-9A-Fa-f]+")


class EndianError(ValueError):
    """Bytes that cannot be read; the message is one line in words."""


def _shown(piece: str) -> str:
    return repr(piece if len(piece) <= SHOWN else piece[: SHOWN - 3] + "...")


def _piece_to_bytes(piece: str) -> bytes:
    digits = piece[2:] if piece[:2] in ("0x", "0X") else piece
    if not digits:
        raise EndianError(f"{_shown(piece)} has no hex digits after 0x")
    if not _HEX.fullmatch(digits):
        raise EndianError(
            f"{_shown(piece)} is not hexadecimal: a byte is written with the digits 0-9 and "
            "A-F, like 47 or 0xEF"
        )
    if len(digits) == 1:
        return bytes([int(digits, 16)])
    if len(digits) % 2:
        raise EndianError(
            f"{_shown(piece)} has an odd number of hex digits ({len(digits)}): write each "
            "byte with two digits, like 47 EF"
        )
    return bytes.fromhex(digits)


def parse_bytes(text: str | Iterable[str]) -> bytes:
    """The bytes a user typed, in the order typed.

    Accepts ``47 EF 15``, ``0x47-0xEF-0X15``, ``47EF15``, ``47,EF`` and the
    lecture's ``[0]=47,[1]=EF,`` dump, in one string or split into arguments.

    Raises:
        EndianError: no bytes, a non-hex digit, an odd run of digits, or more
            than :data:`MAX_BYTES` bytes.
    """
    joined = text if isinstance(text, str) else " ".join(text)
    if len(joined) > MAX_TEXT:
        raise EndianError(
            f"{len(joined)} characters is too much to read: give at most {MAX_BYTES} bytes "
            f"(at most {MAX_TEXT} characters)"
        )
    dump = _LECTURE_DUMP.findall(joined)
    if dump:
        leftover = _LECTURE_DUMP.sub("", joined)
        if _SEPARATORS.sub("", leftover):
            raise EndianError(
                "mix of [i]=XX pairs and other text: paste one line of the dump alone"
            )
        pieces = []
        for index, (number, value) in enumerate(dump):
            if number.lstrip("0") != str(index).lstrip("0"):  # no int() of 2,000 digits
                raise EndianError(f"[{number[:10]}]= is out of order: expected [{index}]= there")
            if not value or len(value) > 2:
                raise EndianError(
                    f"[{number}]={value[:10]} is not one byte (one or two hex digits)"
                )
            pieces.append(value)
    else:
        pieces = [p for p in _SEPARATORS.split(joined) if p]
    data = b"".join(_piece_to_bytes(p) for p in pieces)
    if not data:
        raise EndianError("no bytes given: type some in hex, like 47 EF 15 2A")
    if len(data) > MAX_BYTES:
        raise EndianError(f"{len(data)} bytes is too many to lay out: give at most {MAX_BYTES}")
    return data


@dataclass(frozen=True, slots=True)
class Word:
    """``size`` bytes at ``offset``, read both ways."""

    offset: int
    data: bytes
    big: int
    little: int

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def big_hex(self) -> str:
        return f"0x{self.big:0{self.size * 2}X}"

    @property
    def little_hex(self) -> str:
        return f"0x{self.little:0{self.size * 2}X}"

    def value(self, byteorder: ByteOrder) -> int:
        return self.big if byteorder == "big" else self.little

    def to_json(self) -> dict[str, object]:
        return {
            "offset": self.offset,
            "hex": " ".join(f"{b:02X}" for b in self.data),
            "big": self.big,
            "big_hex": self.big_hex,
            "little": self.little,
            "little_hex": self.little_hex,
        }


@dataclass(frozen=True, slots=True)
class WordTable:
    """The bytes cut into words of one size; ``leftover`` did not fill a word."""

    size: int
    words: tuple[Word, ...]
    leftover: bytes

    @property
    def same_both_ways(self) -> bool:
        """True when byte order cannot matter (1-byte words, or palindromes)."""
        return all(w.big == w.little for w in self.words)

    @property
    def palindrome_note(self) -> str | None:
        """Why both readings agree, when every word of 2+ bytes reads the same both ways.

        ``00 00`` or ``7F 00 00 7F`` are byte palindromes: byte order cannot
        change them, on a little-endian machine as on a big-endian one.
        """
        if self.size == 1 or not self.words or not self.same_both_ways:
            return None
        return (
            f"every {self.size}-byte word here reads the same both ways (a byte palindrome): "
            "big- and little-endian give the same number, on any machine"
        )

    def sequence(self, byteorder: ByteOrder) -> str:
        """The lecture's notation: ``0x47EF-0x152A-0x8937-0xB433``."""
        return "-".join(w.big_hex if byteorder == "big" else w.little_hex for w in self.words)

    def to_json(self) -> dict[str, object]:
        return {
            "size": self.size,
            "words": [w.to_json() for w in self.words],
            "big_sequence": self.sequence("big"),
            "little_sequence": self.sequence("little"),
            "leftover_hex": " ".join(f"{b:02X}" for b in self.leftover),
            "same_both_ways": self.same_both_ways,
        }


@dataclass(frozen=True, slots=True)
class EndianReport:
    """Everything an endianness panel shows, for one byte sequence."""

    data: bytes
    host_byteorder: ByteOrder
    tables: tuple[WordTable, ...]

    @property
    def hex(self) -> str:
        return " ".join(f"{b:02X}" for b in self.data)

    @property
    def host_line(self) -> str:
        """Which byte order this machine uses."""
        first = "least" if self.host_byteorder == "little" else "most"
        return (
            f"This machine is {self.host_byteorder}-endian (sys.byteorder = "
            f"{self.host_byteorder!r}): it stores the {first} significant byte first."
        )

    @property
    def network_line(self) -> str:
        """TCP/IP's byte order and the functions that convert to it."""
        return (
            "TCP/IP is big-endian (network byte order): htons()/htonl() convert to it, "
            "ntohs()/ntohl() back."
        )

    def table(self, size: int) -> WordTable:
        for t in self.tables:
            if t.size == size:
                return t
        raise KeyError(size)

    def to_json(self) -> dict[str, object]:
        return {
            "bytes": list(self.data),
            "hex": self.hex,
            "host_byteorder": self.host_byteorder,
            "network_byteorder": "big",
            "host_line": self.host_line,
            "network_line": self.network_line,
            "tables": [t.to_json() for t in self.tables],
        }


def read_words(
    data: bytes = DEFAULT_BYTES,
    sizes: Sequence[int] = DEFAULT_SIZES,
    byteorder: ByteOrder = HOST_BYTEORDER,
) -> EndianReport:
    """Cut ``data`` into words of each size and read each word both ways.

    Args:
        data: the bytes, lowest address first (default: the lecture's 8 bytes).
        sizes: word sizes in bytes, each 1 to 8.
        byteorder: the host's order; only tests pass anything else.

    Raises:
        EndianError: no bytes, or a size outside 1-8.
    """
    if not data:
        raise EndianError("no bytes given: type some in hex, like 47 EF 15 2A")
    tables = []
    for size in sizes:
        if not 1 <= size <= 8:
            raise EndianError(f"a word is 1 to 8 bytes long, not {size}")
        whole = len(data) - len(data) % size
        words = tuple(
            Word(
                offset=i,
                data=data[i : i + size],
                big=int.from_bytes(data[i : i + size], "big"),
                little=int.from_bytes(data[i : i + size], "little"),
            )
            for i in range(0, whole, size)
        )
        tables.append(WordTable(size=size, words=words, leftover=data[whole:]))
    return EndianReport(data=bytes(data), host_byteorder=byteorder, tables=tuple(tables))


def render_lines(report: EndianReport) -> list[str]:
    """The report as plain text: bytes, one table per word size, byte orders."""
    host = report.host_byteorder
    lines = [
        f"bytes in memory, lowest address first: {report.hex}  ({len(report.data)} bytes)",
    ]
    for table in report.tables:
        lines.append("")
        unit = "byte" if table.size == 1 else "bytes"
        if table.size == 1:
            lines.append(f"1-byte words: {table.sequence('big')}")
            lines.append("  one byte has no byte order: big- and little-endian read the same")
            continue
        lines.append(f"{table.size}-byte words")
        if not table.words:
            lines.append(f"  fewer than {table.size} {unit}: no whole word to read")
            continue
        digits = table.size * 2 + 2
        number = len(str(2 ** (8 * table.size) - 1))
        big_head = "big-endian (network)" + (" <- this machine" if host == "big" else "")
        cell = max(digits + 3 + number, len(big_head))
        little_head = "little-endian" + (" <- this machine" if host == "little" else "")
        bytes_width = max(table.size * 3 - 1, len("bytes"))
        lines.append(
            f"  {'offset':<6}  {'bytes':<{bytes_width}}  {big_head:<{cell}}  {little_head}"
        )
        for w in table.words:
            hexed = " ".join(f"{b:02X}" for b in w.data)
            big = f"{w.big_hex} = {w.big}"
            little = f"{w.little_hex} = {w.little}"
            lines.append(f"  {w.offset:<6}  {hexed:<{bytes_width}}  {big:<{cell}}  {little}")
        lines.append(f"  big-endian:    {table.sequence('big')}")
        lines.append(f"  little-endian: {table.sequence('little')}")
        if table.palindrome_note:
            lines.append(f"  {table.palindrome_note}")
        if table.leftover:
            left = " ".join(f"{b:02X}" for b in table.leftover)
            lines.append(f"  ({left}: too few bytes left for another {table.size}-byte word)")
    lines.append("")
    lines.append(report.host_line)
    lines.append(report.network_line)
    return lines


def render_text(report: EndianReport) -> str:
    return "\n".join(render_lines(report)) + "\n"
