"""The command line of a lab program: a parser that refuses in one line, and checks.

:class:`LabParser` raises :class:`~app.labs.LabUsageError` instead of exiting;
the checkers (:func:`check_port`, :func:`check_ip`, :func:`int_checker`,
:func:`seconds_checker`) read ports, addresses, counts and seconds as a C
program would, in the digits 0-9 only, and say what is wrong in words.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable, Sequence
from typing import NoReturn

from app.labs import LabUsageError, digits_hint, whole_number

Check = Callable[[str], object]
MAX_MESSAGE = 400  # the longest refusal: argparse quotes every unknown argument


class LabParser(argparse.ArgumentParser):
    """An ArgumentParser for lab programs.

    ``error()`` raises :class:`LabUsageError` (one line) instead of exiting.
    Values that need checking in words are checked after parsing (see
    :meth:`check`), so the message is exactly the checker's words, without
    argparse's ``argument X:`` prefix.
    """

    def __init__(self, prog: str, description: str, usage: str | None = None) -> None:
        super().__init__(prog=prog, description=description, usage=usage, allow_abbrev=False)
        self._checks: list[tuple[str, Check]] = []

    def check(self, dest: str, checker: Check) -> None:
        """After parsing, replace ``namespace.dest`` by ``checker(text)`` (skipped if None).

        ``checker`` raises ValueError with the message for the user.
        """
        self._checks.append((dest, checker))

    def parse_known_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        for dest, checker in self._checks:
            text = getattr(parsed, dest, None)
            if text is None or not isinstance(text, str):
                continue
            try:
                setattr(parsed, dest, checker(text))
            except ValueError as exc:
                self.error(str(exc))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        words = " ".join(message.split())  # argparse quotes what was typed: cut to one line
        raise LabUsageError(words if len(words) <= MAX_MESSAGE else words[:397] + "...")


def add_server_address(parser: LabParser, port_help: str) -> None:
    """A server's PORT and ``--bind ADDR`` (default 127.0.0.1), both checked."""
    parser.add_argument("port", metavar="PORT", help=port_help)
    parser.add_argument(
        "--bind",
        metavar="ADDR",
        default="127.0.0.1",
        help="IP address to bind (default 127.0.0.1; 0.0.0.0 is INADDR_ANY, :: for IPv6)",
    )
    parser.check("port", check_port)
    parser.check("bind", check_ip)


SHOWN = 60  # the most of the user's text a message quotes


def _shown(text: str) -> str:
    """The user's text as it goes into a message: numbers bare, words quoted (and cut to
    :data:`SHOWN` characters: a message stays one line)."""
    stripped = text.strip()
    if len(stripped) <= SHOWN and whole_number(stripped.removeprefix("-")) is not None:
        return stripped
    return _quoted(text) + digits_hint(text)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= SHOWN else text[: SHOWN - 3] + "...")


def check_port(text: str) -> int:
    """A TCP/UDP port: a whole number from 1 to 65535, in the digits 0-9."""
    value = whole_number(text)
    if value is None or not 1 <= value <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {_shown(text)}")
    return value


def check_ip(text: str) -> str:
    """An IP address literal, IPv4 or IPv6 (never a host name: nothing is resolved)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        pass
    raise ValueError(
        f"{_quoted(text)} is not an IP address: write it as numbers, like 127.0.0.1 or ::1 "
        "(names such as localhost are not looked up)"
    )


def int_checker(option: str, low: int, high: int) -> Check:
    """A whole number from ``low`` to ``high`` for ``option``."""

    def checker(text: str) -> int:
        value = whole_number(text)
        if value is None or not low <= value <= high:
            raise ValueError(
                f"{option} must be a whole number from {low} to {high}, not {_shown(text)}"
            )
        return value

    return checker


def seconds_checker(option: str, allow_zero: bool) -> Check:
    """A number of seconds for ``option``: at least 0 (or more than 0)."""

    def checker(text: str) -> float:
        # float() also reads other scripts' digits and underscores: 0-9 only.
        plain = text.strip()
        if not plain.isascii() or "_" in plain:
            plain = "nan"
        try:
            value = float(plain)
        except ValueError:
            value = float("nan")
        ok = value >= 0 if allow_zero else value > 0
        if not ok or value == float("inf"):  # NaN compares false
            least = "0 or more" if allow_zero else "more than 0"
            raise ValueError(f"{option} must be a number of seconds, {least}, not {_shown(text)}")
        return value

    return checker
