"""What a user types for a sockaddr: a port, an IP literal, or both in one string.

Every reader here refuses in one line of words (:class:`SockaddrError`) and
never looks a name up: ``localhost`` is refused, as the lecture's
``inet_addr()`` refuses it. Port 0 is accepted: it is a valid ``sin_port``.
"""

from __future__ import annotations

import ipaddress
import re
import socket

_DIGITS = re.compile(r"[0-9]+")
SHOWN = 60  # the most of the user's text a message quotes
IFNAMSIZ = 16  # an interface name is at most 15 characters (and its NUL), in Linux


class SockaddrError(ValueError):
    """Input that cannot go into a sockaddr; the message is one line in words."""


def _shown(text: str) -> str:
    """The user's text, quoted, short enough for one line."""
    return repr(text if len(text) <= SHOWN else text[: SHOWN - 3] + "...")


def _number(digits: str) -> int | None:
    """``digits`` (0-9 only) as a number; None past 20 digits (``int()`` refuses 4,301,
    and no field of a sockaddr holds more than 10)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 20 else None


def parse_port(text: str) -> int:
    """A port as typed by a user: ASCII decimal digits only, 0 to 65535.

    0 is valid in a sockaddr (``bind()`` then lets the OS choose a port).
    Other scripts' digits (Arabic-Indic ``٧٤٠٠``, full-width ``７４００``) are
    refused: ``int()`` would take them, but no C program's ``atoi()`` does.

    Raises:
        SockaddrError: not a whole decimal number, or outside 0-65535.
    """
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        if text and all(c.isdigit() for c in text):
            raise SockaddrError(
                f"a port is written with the digits 0-9; {_shown(text)} uses other digits "
                "(atoi() in C reads only 0-9)"
            )
        raise SockaddrError(f"a port is a whole number from 0 to 65535, not {_shown(text)}")
    value = _number(text)
    if value is None or value > 65535:
        big = text.lstrip("0") if value is None else str(value)
        big = big if len(big) <= 20 else big[:17] + "..."
        raise SockaddrError(
            f"a port is a number from 0 to 65535 (it has 16 bits); {big} is too big"
        )
    return value


def _scope_to_index(scope: str) -> int:
    if _DIGITS.fullmatch(scope):
        value = _number(scope)
        if value is None or value > 0xFFFFFFFF:
            raise SockaddrError(
                f"a scope id is a 32-bit interface index (at most {0xFFFFFFFF}); "
                f"{_shown(scope)} is too big"
            )
        return value
    if len(scope) >= IFNAMSIZ or "\0" in scope or "/" in scope:
        raise SockaddrError(
            f"{_shown(scope)} is not an interface name: at most {IFNAMSIZ - 1} characters, "
            "like lo or eth0 (see `ip addr`)"
        )
    try:
        return socket.if_nametoindex(scope)
    except (OSError, ValueError, UnicodeError):
        raise SockaddrError(
            f"no network interface named {_shown(scope)} on this machine (see `ip addr`)"
        ) from None


def parse_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """An IPv4 or IPv6 literal (never a host name), and its IPv6 scope id.

    ``fe80::1%lo`` or ``fe80::1%1`` give the scope id of that interface; it is
    0 for every other address.

    Raises:
        SockaddrError: not an IP address literal.
    """
    text = text.strip()
    if not text:
        raise SockaddrError("an address is needed, like 127.0.0.1 or ::1")
    scope_id = 0
    literal = text
    if "%" in text:
        literal, _, scope = text.partition("%")
        if ":" not in literal or not scope:
            raise SockaddrError(
                f"{_shown(text)} is not an IP address; only IPv6 addresses take a %scope"
            )
        scope_id = _scope_to_index(scope)
    try:
        addr = ipaddress.ip_address(literal)
    except ValueError:
        raise SockaddrError(
            f"{_shown(text)} is not an IPv4 or IPv6 address (like 127.0.0.1 or ::1); "
            "names are not looked up here"
        ) from None
    return addr, scope_id


def parse_endpoint(text: str) -> tuple[str, int]:
    """An address and a port in one string, as a student types them.

    ``10.0.2.15:6000``, ``[::1]:7000``, ``0.0.0.0 6000``, ``::1 7000`` and
    ``[fe80::1%lo]:80``. A bare ``::1:7000`` is refused: it is itself a valid
    IPv6 address, so the port must be set apart by brackets or a space.

    Returns:
        (the address as typed, the port).

    Raises:
        SockaddrError: no port, a bad address or a bad port (one line of words).
    """
    text = text.strip()
    example = "like 127.0.0.1:6000, [::1]:7000 or 0.0.0.0 6000"
    if not text:
        raise SockaddrError(f"type an address and a port, {example}")
    parts = text.split()
    if len(parts) > 2:
        raise SockaddrError(
            f"one address and one port, {example}; {_shown(text)} has {len(parts)} parts"
        )
    if len(parts) == 2:
        address, port = parts
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
    elif text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise SockaddrError(f"{_shown(text)} opens [ but never closes it: write [::1]:7000")
        if not rest.startswith(":") or not rest[1:]:
            raise SockaddrError(
                f"{_shown(text)} has no port: write it after the bracket, as [::1]:7000"
            )
        port = rest[1:]
    elif text.count(":") == 1:
        address, _, port = text.partition(":")
    elif ":" in text:
        raise SockaddrError(
            f"{_shown(text)}: write an IPv6 address with a port in brackets, [::1]:7000, or with "
            "a space, ::1 7000 (::1:7000 alone is itself an IPv6 address)"
        )
    else:
        raise SockaddrError(f"{_shown(text)} has no port: add one, {example}")
    number = parse_port(port)
    parse_address(address)  # refused here, in words, before anything is built
    return address, number
