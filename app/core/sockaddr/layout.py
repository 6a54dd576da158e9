"""The bytes of ``struct sockaddr_in``/``sockaddr_in6`` and what each field means.

:func:`build_sockaddr` packs an address and a port with :mod:`struct` as Linux
lays them out, and explains each field (:class:`Field`) and each ``hton*()``
value (:class:`ByteOrderRow`); :func:`steps` replays the lecture's program
statement by statement. Pure functions: no socket is opened.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.core.sockaddr.parse import SockaddrError, parse_address

ByteOrder = Literal["little", "big"]

HOST_BYTEORDER: ByteOrder = "little" if sys.byteorder == "little" else "big"

SOCKADDR_IN_SIZE = 16
SOCKADDR_IN6_SIZE = 28
# Linux's values; taken from the socket module so that they are this OS's truth.
AF_INET = int(socket.AF_INET)
AF_INET6 = int(socket.AF_INET6)


def lecture_line(data: bytes) -> str:
    """The bytes exactly as the lecture's C loop prints them.

    ``printf("[%d]=%X,", i, (unsigned char)byte)`` for each byte, trailing
    comma included: ``[0]=2,[1]=0,[2]=3,[3]=E8,``.
    """
    return "".join(f"[{i}]={b:X}," for i, b in enumerate(data))


def hex_bytes(data: bytes) -> str:
    """``7F 00 00 01``: two hex digits per byte, separated by spaces."""
    return " ".join(f"{b:02X}" for b in data)


def is_palindrome(data: bytes) -> bool:
    """True when the bytes read the same both ways (``00 00``, ``7F 00 00 7F``, ``01 01``).

    Such a value has the same bytes in either byte order, so ``htons()`` and
    ``htonl()`` give it back unchanged on every machine, little-endian ones too.
    """
    return data == data[::-1]


@dataclass(frozen=True, slots=True)
class Field:
    """One member of the struct: where it sits, its bytes, and what they mean."""

    name: str
    offset: int
    size: int
    data: bytes
    meaning: str

    @property
    def hex(self) -> str:
        return hex_bytes(self.data)

    @property
    def span(self) -> str:
        """``4-7``: first and last offset of the field."""
        return f"{self.offset}-{self.offset + self.size - 1}"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "offset": self.offset,
            "size": self.size,
            "hex": self.hex,
            "meaning": self.meaning,
        }


@dataclass(frozen=True, slots=True)
class ByteOrderRow:
    """One value shown in both byte orders, with what ``hton*`` makes of it."""

    function: str  # "htons" or "htonl"
    label: str  # "port 1000"
    value: int  # the number in the program (host order)
    host_bytes: bytes  # how this machine stores the number
    network_bytes: bytes  # big-endian: what goes into the struct
    converted: int  # hton*(value) read back as a number on this machine

    @property
    def palindrome(self) -> bool:
        """The bytes read the same both ways: hton*() changes nothing on any machine."""
        return is_palindrome(self.network_bytes)

    @property
    def argument(self) -> str:
        """The value as a C program writes it: ``1000`` for a port, ``0x7F000001`` for htonl."""
        if self.function == "htons":
            return str(self.value)
        return f"0x{self.value:0{len(self.network_bytes) * 2}X}"

    @property
    def call(self) -> str:
        """``htons(1000)``, ``htonl(0x7F000001)``."""
        return f"{self.function}({self.argument})"

    def to_json(self) -> dict[str, object]:
        return {
            "function": self.function,
            "label": self.label,
            "value": self.value,
            "host_hex": hex_bytes(self.host_bytes),
            "network_hex": hex_bytes(self.network_bytes),
            "converted": self.converted,
            "palindrome": self.palindrome,
        }


@dataclass(frozen=True, slots=True)
class Step:
    """The struct after one C statement of the lecture's program."""

    statement: str
    data: bytes
    changed: tuple[int, ...]  # offsets this statement changed
    note: str

    @property
    def line(self) -> str:
        return lecture_line(self.data)

    def to_json(self) -> dict[str, object]:
        return {
            "statement": self.statement,
            "line": self.line,
            "changed": list(self.changed),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class SockaddrLayout:
    """A filled-in ``sockaddr_in``/``sockaddr_in6`` and its explanation."""

    struct_name: str  # "sockaddr_in" / "sockaddr_in6"
    family_name: str  # "AF_INET" / "AF_INET6"
    family: int
    address: str  # canonical text of the address
    port: int
    data: bytes
    fields: tuple[Field, ...]
    byte_order: tuple[ByteOrderRow, ...]
    host_byteorder: ByteOrder
    notes: tuple[str, ...] = field(default=())
    flowinfo: int = 0
    scope_id: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def lecture_line(self) -> str:
        return lecture_line(self.data)

    def to_json(self) -> dict[str, object]:
        return {
            "struct": self.struct_name,
            "family": self.family_name,
            "family_value": self.family,
            "address": self.address,
            "port": self.port,
            "flowinfo": self.flowinfo,
            "scope_id": self.scope_id,
            "size": self.size,
            "bytes": list(self.data),
            "hex": self.data.hex().upper(),
            "lecture_line": self.lecture_line,
            "host_byteorder": self.host_byteorder,
            "fields": [f.to_json() for f in self.fields],
            "byte_order": [r.to_json() for r in self.byte_order],
            "notes": list(self.notes),
        }


def _family_bytes(family: int, byteorder: ByteOrder) -> bytes:
    # sa_family_t is an unsigned short stored in the host's own order.
    return struct.pack("<H" if byteorder == "little" else ">H", family)


def _u32_host(value: int, byteorder: ByteOrder) -> bytes:
    return struct.pack("<I" if byteorder == "little" else ">I", value)


def _as_host_number(data: bytes, byteorder: ByteOrder) -> int:
    return int.from_bytes(data, byteorder)


def _port_meaning(port: int, prefix: str, byteorder: ByteOrder) -> str:
    be = struct.pack(">H", port)
    text = (
        f"{prefix} = htons({port}) = 0x{port:04X} in network byte order (big-endian): "
        f"bytes {hex_bytes(be)}"
    )
    if is_palindrome(be):
        return text + (
            "; its two bytes are equal, so they read the same both ways and htons() gives "
            f"{port} back on any machine, this {byteorder}-endian one too"
        )
    if byteorder == "little":
        return text + (
            f"; read little-endian on this machine it would be {_as_host_number(be, 'little')}"
        )
    return text + "; this machine is big-endian too, so htons() changes nothing"


def _notes(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> tuple[str, ...]:
    notes: list[str] = []
    if port == 0:
        notes.append(
            "port 0: given to bind() it asks the OS to choose a free port; "
            "connect() to port 0 fails, nothing can listen there"
        )
    elif port < 1024:
        notes.append(
            f"port {port} is below 1024: a privileged port, normally only root may bind() it "
            "(a client may connect() to it freely)"
        )
    if addr.is_unspecified:
        name = "INADDR_ANY" if addr.version == 4 else "in6addr_any"
        notes.append(
            f"{addr} is {name}: a server bound to it accepts on every address of the machine"
        )
    if addr.version == 4 and int(addr) == 0xFFFFFFFF:
        notes.append(
            "inet_addr() returns INADDR_NONE (-1) on error, which is this very address: "
            "it cannot tell them apart; inet_pton() can"
        )
    if addr.is_loopback:
        notes.append(f"{addr} is loopback: the packets never leave this machine")
    return tuple(notes)


def _byte_order_row(
    function: str, label: str, value: int, network_bytes: bytes, byteorder: ByteOrder
) -> ByteOrderRow:
    """``value`` as this machine stores it and as the network does, for ``function``."""
    return ByteOrderRow(
        function=function,
        label=label,
        value=value,
        host_bytes=value.to_bytes(len(network_bytes), byteorder),
        network_bytes=network_bytes,
        converted=_as_host_number(network_bytes, byteorder),
    )


def _family_field(name: str, family_name: str, family: int, byteorder: ByteOrder) -> Field:
    """``sin_family``/``sin6_family``: offset 0, two bytes in the host's order."""
    data = _family_bytes(family, byteorder)
    return Field(
        name,
        0,
        2,
        data,
        f"{name} = {family_name} ({family}), host byte order "
        f"({byteorder}-endian here: bytes {hex_bytes(data)})",
    )


def _addr_meaning_v4(addr: ipaddress.IPv4Address, byteorder: ByteOrder) -> str:
    """``sin_addr``'s bytes, and what htonl() does to the number they come from."""
    addr_be = addr.packed
    value = int(addr)
    as_number = f"; as a host-order integer that is 0x{value:08X} = {value}"
    if is_palindrome(addr_be):
        tail = (
            f"{as_number}; its bytes read the same both ways (a byte palindrome), so htonl() "
            f"gives the same value on any machine, this {byteorder}-endian one too"
        )
    elif byteorder == "little":
        swapped = _as_host_number(addr_be, "little")
        tail = (
            f"{as_number}, which htonl() turns into these bytes; read little-endian on this "
            f"machine they would be 0x{swapped:08X} = {swapped}"
        )
    else:
        tail = f"{as_number}; this machine is big-endian too, so htonl() changes nothing"
    return (
        f'sin_addr = inet_addr("{addr}") = bytes {hex_bytes(addr_be)} in network byte '
        f"order (big-endian){tail}"
    )


def _shown_v6(addr: ipaddress.IPv6Address) -> str:
    """The address as people write it: without a %scope, an IPv4-mapped one dotted."""
    # str() of a scoped address ends in %scope.
    mapped = addr.ipv4_mapped
    return f"::ffff:{mapped}" if mapped else str(ipaddress.IPv6Address(int(addr)))


def _flowinfo_field(flowinfo: int) -> Field:
    return Field(
        "sin6_flowinfo",
        4,
        4,
        struct.pack(">I", flowinfo),
        f"sin6_flowinfo = {flowinfo}: IPv6 flow label, network byte order; "
        "0 unless a program sets it",
    )


def _addr_field_v6(addr: ipaddress.IPv6Address, shown: str) -> Field:
    return Field(
        "sin6_addr",
        8,
        16,
        addr.packed,
        f'sin6_addr = inet_pton(AF_INET6, "{shown}"): 16 bytes in network byte order '
        "(most significant first); no htonl(), the bytes are already in order",
    )


def _scope_field(scope_id: int, byteorder: ByteOrder) -> Field:
    return Field(
        "sin6_scope_id",
        24,
        4,
        _u32_host(scope_id, byteorder),
        f"sin6_scope_id = {scope_id}: interface index for link-local addresses, "
        f"host byte order; 0 = none",
    )


def build_sockaddr(
    address: str,
    port: int,
    *,
    flowinfo: int = 0,
    scope_id: int | None = None,
    byteorder: ByteOrder = HOST_BYTEORDER,
) -> SockaddrLayout:
    """Fill a ``sockaddr_in`` (IPv4 literal) or ``sockaddr_in6`` (IPv6 literal).

    Args:
        address: an IP literal; ``fe80::1%lo`` carries a scope id.
        port: 0-65535, in host order as a program has it.
        flowinfo: IPv6 flow information (stored big-endian); 0 in practice.
        scope_id: IPv6 interface index; overrides a ``%scope`` in ``address``.
        byteorder: the host's byte order; only tests pass anything else, to
            show a big-endian machine's bytes.

    Raises:
        SockaddrError: a bad address, port, flowinfo or scope id (one line of words).
    """
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise SockaddrError(f"a port is a number from 0 to 65535, not {port!r}")
    addr, parsed_scope = parse_address(address)
    if scope_id is None:
        scope_id = parsed_scope
    port_be = struct.pack(">H", port)
    port_row = _byte_order_row("htons", f"port {port}", port, port_be, byteorder)
    if isinstance(addr, ipaddress.IPv4Address):
        return _build_v4(addr, port, port_be, port_row, byteorder)
    if not 0 <= flowinfo <= 0xFFFFFFFF:
        raise SockaddrError(f"flowinfo is a 32-bit number; {flowinfo} is outside 0-4294967295")
    if not 0 <= scope_id <= 0xFFFFFFFF:
        raise SockaddrError(f"a scope id is a 32-bit number; {scope_id} is outside 0-4294967295")
    return _build_v6(addr, port, port_be, port_row, flowinfo, scope_id, byteorder)


def _build_v4(
    addr: ipaddress.IPv4Address,
    port: int,
    port_be: bytes,
    port_row: ByteOrderRow,
    byteorder: ByteOrder,
) -> SockaddrLayout:
    addr_be = addr.packed  # inet_addr() already gives network order
    fields = (
        _family_field("sin_family", "AF_INET", AF_INET, byteorder),
        Field("sin_port", 2, 2, port_be, _port_meaning(port, "sin_port", byteorder)),
        Field("sin_addr", 4, 4, addr_be, _addr_meaning_v4(addr, byteorder)),
        Field("sin_zero", 8, 8, bytes(8), "padding, 8 zero bytes (sin_zero), to fill 16 bytes"),
    )
    data = b"".join(f.data for f in fields)  # the fields lie back to back, no gaps
    assert len(data) == SOCKADDR_IN_SIZE
    addr_row = _byte_order_row("htonl", f"address {addr}", int(addr), addr_be, byteorder)
    return SockaddrLayout(
        struct_name="sockaddr_in",
        family_name="AF_INET",
        family=AF_INET,
        address=str(addr),
        port=port,
        data=data,
        fields=fields,
        byte_order=(port_row, addr_row),
        host_byteorder=byteorder,
        notes=_notes(addr, port),
    )


def _build_v6(
    addr: ipaddress.IPv6Address,
    port: int,
    port_be: bytes,
    port_row: ByteOrderRow,
    flowinfo: int,
    scope_id: int,
    byteorder: ByteOrder,
) -> SockaddrLayout:
    shown = _shown_v6(addr)
    fields = (
        _family_field("sin6_family", "AF_INET6", AF_INET6, byteorder),
        Field("sin6_port", 2, 2, port_be, _port_meaning(port, "sin6_port", byteorder)),
        _flowinfo_field(flowinfo),
        _addr_field_v6(addr, shown),
        _scope_field(scope_id, byteorder),
    )
    data = b"".join(f.data for f in fields)  # the fields lie back to back, no gaps
    assert len(data) == SOCKADDR_IN6_SIZE
    return SockaddrLayout(
        struct_name="sockaddr_in6",
        family_name="AF_INET6",
        family=AF_INET6,
        address=shown,
        port=port,
        data=data,
        fields=fields,
        byte_order=(port_row,),
        host_byteorder=byteorder,
        notes=_notes(addr, port),
        flowinfo=flowinfo,
        scope_id=scope_id,
    )


def _changed(before: bytes, after: bytes) -> tuple[int, ...]:
    return tuple(i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b)


def steps(layout: SockaddrLayout) -> list[Step]:
    """The struct after each statement, in the lecture's order.

    IPv4: ``memset``, ``sin_family``, ``sin_addr``, ``sin_port`` (the four
    lines the lecture prints); IPv6 the same, plus ``sin6_scope_id`` and
    ``sin6_flowinfo`` when they are not 0.
    """
    size = layout.size
    by_name = {f.name: f for f in layout.fields}
    current = bytearray(size)
    out: list[Step] = [
        Step(
            "memset(&addr, 0, sizeof(addr));",
            bytes(current),
            (),
            f"all {size} bytes set to zero",
        )
    ]

    def assign(name: str, statement: str) -> None:
        f = by_name[name]
        before = bytes(current)
        current[f.offset : f.offset + f.size] = f.data
        changed = _changed(before, bytes(current))
        if changed:
            where = f"bytes {f.span} now {f.hex}"
            if len(changed) < f.size:
                where += f" (only {_offsets(changed)} changed: zeros were already there)"
        else:
            where = f"bytes {f.span} stay {f.hex}: the value is zero"
        out.append(Step(statement, bytes(current), changed, where))

    if layout.family == AF_INET:
        assign("sin_family", "addr.sin_family = AF_INET;")
        assign("sin_addr", f'addr.sin_addr.s_addr = inet_addr("{layout.address}");')
        assign("sin_port", f"addr.sin_port = htons({layout.port});")
    else:
        assign("sin6_family", "addr.sin6_family = AF_INET6;")
        assign("sin6_addr", f'inet_pton(AF_INET6, "{layout.address}", &addr.sin6_addr);')
        assign("sin6_port", f"addr.sin6_port = htons({layout.port});")
        if layout.flowinfo:
            assign("sin6_flowinfo", f"addr.sin6_flowinfo = htonl({layout.flowinfo});")
        if layout.scope_id:
            assign("sin6_scope_id", f"addr.sin6_scope_id = {layout.scope_id};")
    return out


def lecture_steps(address: str, port: int) -> list[str]:
    """The lines the lecture's program prints: after memset, family, address, port."""
    return [s.line for s in steps(build_sockaddr(address, port))]


def _offsets(offsets: Sequence[int]) -> str:
    return ("byte " if len(offsets) == 1 else "bytes ") + ", ".join(str(o) for o in offsets)
