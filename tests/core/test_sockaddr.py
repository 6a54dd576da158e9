"""sockaddr_in / sockaddr_in6 bytes, checked against the lecture and the kernel."""

from __future__ import annotations

import json
import re
import socket
import struct
import sys

import pytest

from app.core.sockaddr import (
    SOCKADDR_IN6_SIZE,
    SOCKADDR_IN_SIZE,
    SockaddrError,
    build_sockaddr,
    hton_sentence,
    lecture_line,
    lecture_steps,
    parse_address,
    parse_endpoint,
    parse_port,
    render_lines,
    render_steps,
    steps,
)
from tests.conftest import observatory

# The lecture's output of `./tcp_client1b 127.0.0.1 hola 1000`, copied verbatim
# from its slide: after memset, family, address, port.
LECTURE_STEPS = [
    "[0]=0,[1]=0,[2]=0,[3]=0,[4]=0,[5]=0,[6]=0,[7]=0,[8]=0,[9]=0,[10]=0,[11]=0,[12]=0,[13]=0,[14]=0,[15]=0,",
    "[0]=2,[1]=0,[2]=0,[3]=0,[4]=0,[5]=0,[6]=0,[7]=0,[8]=0,[9]=0,[10]=0,[11]=0,[12]=0,[13]=0,[14]=0,[15]=0,",
    "[0]=2,[1]=0,[2]=0,[3]=0,[4]=7F,[5]=0,[6]=0,[7]=1,[8]=0,[9]=0,[10]=0,[11]=0,[12]=0,[13]=0,[14]=0,[15]=0,",
    "[0]=2,[1]=0,[2]=3,[3]=E8,[4]=7F,[5]=0,[6]=0,[7]=1,[8]=0,[9]=0,[10]=0,[11]=0,[12]=0,[13]=0,[14]=0,[15]=0,",
]
LECTURE_LINE = LECTURE_STEPS[-1]


def test_lecture_line_is_the_c_printf_form() -> None:
    assert lecture_line(bytes([2, 0, 3, 0xE8])) == "[0]=2,[1]=0,[2]=3,[3]=E8,"
    assert lecture_line(b"") == ""


def test_ipv4_bytes_match_the_lecture() -> None:
    layout = build_sockaddr("127.0.0.1", 1000)
    assert layout.size == SOCKADDR_IN_SIZE == 16
    assert layout.lecture_line == LECTURE_LINE
    assert [s.line for s in steps(layout)] == LECTURE_STEPS
    names = [f.name for f in layout.fields]
    assert names == ["sin_family", "sin_port", "sin_addr", "sin_zero"]
    assert [(f.offset, f.size) for f in layout.fields] == [(0, 2), (2, 2), (4, 4), (8, 8)]


def test_ipv4_bytes_equal_what_the_kernel_reports() -> None:
    # getsockname() on Linux returns the kernel's own struct sockaddr_in,
    # which Python decodes; pack the kernel's view the C way and compare.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        addr, port = s.getsockname()
    finally:
        s.close()
    expected = (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", port)
        + socket.inet_pton(socket.AF_INET, addr)
        + bytes(8)
    )
    assert build_sockaddr(addr, port).data == expected


def test_field_meanings_say_the_byte_orders() -> None:
    layout = build_sockaddr("127.0.0.1", 1000, byteorder="little")
    by = {f.name: f for f in layout.fields}
    assert by["sin_family"].meaning.startswith("sin_family = AF_INET (2), host byte order")
    assert by["sin_port"].hex == "03 E8"
    assert by["sin_port"].meaning.startswith(
        "sin_port = htons(1000) = 0x03E8 in network byte order (big-endian): bytes 03 E8; "
        "read little-endian on this machine it would be 59395"
    )
    assert 0xE803 == 59395  # the arithmetic behind that sentence
    assert by["sin_addr"].meaning.startswith(
        'sin_addr = inet_addr("127.0.0.1") = bytes 7F 00 00 01'
    )
    assert "htonl" in by["sin_addr"].meaning and "2130706433" in by["sin_addr"].meaning
    assert by["sin_zero"].meaning.startswith("padding, 8 zero bytes")
    port_row, addr_row = layout.byte_order
    assert (port_row.host_bytes, port_row.network_bytes, port_row.converted) == (
        b"\xe8\x03",
        b"\x03\xe8",
        59395,
    )
    assert addr_row.host_bytes == b"\x01\x00\x00\x7f"
    assert addr_row.network_bytes == b"\x7f\x00\x00\x01"
    assert addr_row.converted == 0x0100007F == 16777343


# Values whose bytes read the same both ways: INADDR_ANY, 127.0.0.127, the broadcast
# address, and ports like 257 (01 01). htonl()/htons() change nothing on ANY machine.
PALINDROMES = [
    ("0.0.0.0", 6000, "htonl(0x00000000)"),
    ("127.0.0.127", 80, "htonl(0x7F00007F)"),
    ("255.255.255.255", 80, "htonl(0xFFFFFFFF)"),
    ("127.0.0.1", 257, "htons(257)"),
    ("::1", 0, "htons(0)"),
]


@pytest.mark.parametrize(("address", "port", "call"), PALINDROMES)
def test_a_byte_palindrome_is_never_called_big_endian_on_a_little_endian_machine(
    address: str, port: int, call: str
) -> None:
    layout = build_sockaddr(address, port, byteorder="little")
    text = "\n".join(render_lines(layout) + [f.meaning for f in layout.fields])
    assert "big-endian too" not in text and "changes nothing: this machine is big" not in text
    (line,) = [line for line in render_lines(layout) if line.startswith(call)]
    assert "read the same both ways (a byte palindrome)" in line, line
    assert "change nothing on any machine; this machine is little-endian" in line, line
    port_field = layout.fields[1].meaning
    if port in (257, 0):
        assert "read the same both ways" in port_field and "this little-endian one" in port_field
    # And a big-endian machine says it is big-endian, still naming the palindrome.
    big = build_sockaddr(address, port, byteorder="big")
    (line,) = [line for line in render_lines(big) if line.startswith(call)]
    assert "byte palindrome" in line and line.endswith("this machine is big-endian"), line


def test_hton_sentences_name_this_machines_real_byte_order() -> None:
    layout = build_sockaddr("127.0.0.1", 1000)  # this machine's own order, sys.byteorder
    port_row, addr_row = layout.byte_order
    assert layout.host_byteorder == sys.byteorder
    if sys.byteorder == "little":
        assert hton_sentence(port_row, "little") == (
            "htons(1000) = 0xE803 = 59395 read as a number on this little-endian machine; "
            "ntohs() turns it back into 1000"
        )
    big = build_sockaddr("127.0.0.1", 1000, byteorder="big")
    assert hton_sentence(big.byte_order[1], "big") == (
        "htonl(0x7F000001) changes nothing: this machine is big-endian, the network's byte order"
    )
    zero = build_sockaddr("0.0.0.0", 6000).byte_order[1]
    assert hton_sentence(zero, layout.host_byteorder).endswith(
        f"this machine is {sys.byteorder}-endian"
    )


def test_cli_says_the_truth_about_inaddr_any() -> None:
    out = observatory("sockaddr", "0.0.0.0", "6000")
    assert out.returncode == 0, out.stderr
    assert (
        "htonl(0x00000000) gives 0x00000000 back: its bytes 00 00 00 00 read the same both "
        "ways (a byte palindrome)"
    ) in out.stdout
    assert f"this machine is {sys.byteorder}-endian" in out.stdout
    if sys.byteorder == "little":
        assert "big-endian too" not in out.stdout


def test_big_endian_host_keeps_family_big_endian_and_htons_is_identity() -> None:
    layout = build_sockaddr("127.0.0.1", 1000, byteorder="big")
    assert layout.data[:4] == bytes([0, 2, 3, 0xE8])
    assert layout.byte_order[0].converted == 1000
    assert "changes nothing" in layout.fields[1].meaning


def test_ipv6_layout_is_28_bytes() -> None:
    layout = build_sockaddr("::1", 1000, byteorder="little")
    assert layout.size == SOCKADDR_IN6_SIZE == 28
    assert layout.struct_name == "sockaddr_in6"
    data = layout.data
    assert data[0:2] == struct.pack("<H", socket.AF_INET6)
    assert data[2:4] == b"\x03\xe8"
    assert data[4:8] == bytes(4)  # flowinfo
    assert data[8:24] == bytes(15) + b"\x01"
    assert data[24:28] == bytes(4)  # scope id
    assert [f.name for f in layout.fields] == [
        "sin6_family",
        "sin6_port",
        "sin6_flowinfo",
        "sin6_addr",
        "sin6_scope_id",
    ]
    assert sum(f.size for f in layout.fields) == 28


def test_ipv6_flowinfo_is_big_endian_and_scope_id_host_order() -> None:
    layout = build_sockaddr("fe80::1", 80, flowinfo=0x12345, scope_id=3, byteorder="little")
    assert layout.data[4:8] == bytes([0x00, 0x01, 0x23, 0x45])
    assert layout.data[24:28] == bytes([3, 0, 0, 0])
    big = build_sockaddr("fe80::1", 80, scope_id=3, byteorder="big")
    assert big.data[24:28] == bytes([0, 0, 0, 3])


def test_scope_by_interface_name() -> None:
    index = socket.if_nametoindex("lo")
    layout = build_sockaddr("fe80::1%lo", 1, byteorder="little")
    assert layout.scope_id == index
    assert layout.address == "fe80::1"
    assert layout.data[24:28] == struct.pack("<I", index)


def test_ipv4_mapped_address_is_shown_dotted() -> None:
    layout = build_sockaddr("::ffff:10.0.0.1", 1)
    assert layout.address == "::ffff:10.0.0.1"
    assert layout.data[8:24] == bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])


def test_steps_for_ipv6_and_changed_offsets() -> None:
    layout = build_sockaddr("::1", 1000)
    all_steps = steps(layout)
    assert len(all_steps) == 4
    assert all_steps[0].data == bytes(28)
    assert all_steps[-1].data == layout.data
    assert all_steps[2].changed == (23,)  # only the last byte of ::1 is not zero
    v4 = steps(build_sockaddr("127.0.0.1", 1000))
    assert v4[2].changed == (4, 7) and "only bytes 4, 7 changed" in v4[2].note
    assert v4[3].changed == (2, 3)


def test_port_zero_is_valid_and_explained() -> None:
    assert parse_port("0") == 0
    layout = build_sockaddr("0.0.0.0", 0)
    assert layout.data == bytes([2, 0]) + bytes(14)
    notes = " ".join(layout.notes)
    assert "OS to choose" in notes and "INADDR_ANY" in notes


@pytest.mark.parametrize("text", ["-1", "65536", "abc", "1.5", "", " ", "0x10", "1_000", "+5", "٣"])
def test_bad_ports_are_refused(text: str) -> None:
    with pytest.raises(SockaddrError):
        parse_port(text)


@pytest.mark.parametrize("text", ["٧٤٠٠", "７４００", "7٤00", "۷۴۰۰"])
def test_ports_in_other_digits_are_refused_in_words(text: str) -> None:
    # int() reads all of these as 7400; a C program's atoi() reads none of them.
    assert int(text) == 7400
    with pytest.raises(SockaddrError, match="digits 0-9"):
        parse_port(text)
    with pytest.raises(SockaddrError, match="digits 0-9"):
        parse_endpoint(f"127.0.0.1:{text}")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("10.0.2.15:6000", ("10.0.2.15", 6000)),
        ("  0.0.0.0 6000 ", ("0.0.0.0", 6000)),
        ("[::1]:7000", ("::1", 7000)),
        ("::1 7000", ("::1", 7000)),
        ("[::1] 7000", ("::1", 7000)),
        ("[fe80::1%lo]:80", ("fe80::1%lo", 80)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_endpoint_as_a_student_types_it(typed: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(typed) == expected


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "type an address and a port"),
        ("127.0.0.1", "has no port"),
        ("::1:7000", "in brackets, [::1]:7000"),
        ("[::1]", "has no port"),
        ("[::1:7000", "never closes"),
        ("127.0.0.1:", "not ''"),
        ("127.0.0.1:70000", "too big"),
        ("localhost:80", "names are not looked up"),
        ("1.2.3.4 80 90", "3 parts"),
    ],
)
def test_bad_endpoints_are_refused_in_words(typed: str, words: str) -> None:
    with pytest.raises(SockaddrError, match=re.escape(words)):
        parse_endpoint(typed)


@pytest.mark.parametrize(
    "text",
    ["localhost", "127.1", "256.0.0.1", "1.2.3.4%lo", "fe80::1%", "::g", "", "example.org"],
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(SockaddrError):
        parse_address(text)


def test_unknown_interface_scope_is_refused() -> None:
    with pytest.raises(SockaddrError, match="no network interface"):
        parse_address("fe80::1%no-such-if0")


def test_render_wraps_explanations_but_never_the_first_line() -> None:
    layout = build_sockaddr("127.0.0.1", 1000)
    wide = render_lines(layout)
    narrow = render_lines(layout, width=76)
    assert wide[0] == narrow[0] == LECTURE_LINE
    assert all(len(line) <= 76 for line in narrow[1:])
    assert len(narrow) > len(wide)
    assert render_steps(layout)[:4] == LECTURE_STEPS


# --- the command -----------------------------------------------------------------


def test_cli_first_line_is_the_lecture_line() -> None:
    out = observatory("sockaddr", "127.0.0.1", "1000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == LECTURE_LINE
    rest = "\n".join(lines[1:])
    assert "sin_family = AF_INET (2), host byte order" in rest
    assert "htons(1000)" in rest and "59395" in rest
    assert 'inet_addr("127.0.0.1")' in rest
    assert "padding, 8 zero bytes" in rest
    assert out.stderr == ""


def test_cli_ipv6_is_28_bytes() -> None:
    out = observatory("sockaddr", "::1", "1000")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    pairs = first.rstrip(",").split(",")
    assert len(pairs) == 28
    assert pairs[0] == f"[0]={socket.AF_INET6:X}"
    assert pairs[2:4] == ["[2]=3", "[3]=E8"]
    assert pairs[23] == "[23]=1"


def test_cli_steps_prints_the_lecture_four_lines() -> None:
    out = observatory("sockaddr", "127.0.0.1", "1000", "--steps")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:4] == LECTURE_STEPS


def test_cli_json() -> None:
    out = observatory("sockaddr", "127.0.0.1", "1000", "--json", "--steps")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["lecture_line"] == LECTURE_LINE
    assert data["size"] == 16 and data["struct"] == "sockaddr_in"
    assert data["bytes"][:4] == [2, 0, 3, 0xE8]
    assert [s["line"] for s in data["steps"]] == LECTURE_STEPS


@pytest.mark.parametrize(
    "args",
    [
        ("localhost", "1000"),
        ("127.0.0.1", "65536"),
        ("127.0.0.1", "-1"),
        ("127.0.0.1", "port"),
        ("300.1.1.1", "80"),
        ("fe80::1%no-such-if0", "80"),
        ("127.0.0.1",),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args: tuple[str, ...]) -> None:
    out = observatory("sockaddr", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("observatory sockaddr")


def test_lecture_steps_shortcut() -> None:
    assert lecture_steps("127.0.0.1", 1000) == LECTURE_STEPS
