"""Argument parsing that answers a student in one line of words."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from app.core.terminal_text import printable
from app.labs import digits_hint, whole_number

# The longest message OneLineParser writes, and the most of a user's text a message quotes.
MAX_MESSAGE = 800
MAX_QUOTED = 60
# Seconds: an interval or a timeout is at most a day (a longer wait is Ctrl-C's job), and
# an interval or timeout below a tenth of a second would only load the machine (or the room).
MOST_SECONDS = 86400.0
LEAST_INTERVAL = 0.1


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2.

    ``str()`` is terminal-safe: a control character of the user's text (or of a file's)
    is written as an escape (``\\x1b``), so the message cannot move the cursor."""

    def __str__(self) -> str:
        return one_line(super().__str__())


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one terminal-safe line of at most ``limit`` characters."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(text: str, limit: int = MAX_QUOTED) -> str:
    """A user's text as a message quotes it: ``repr``, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2.

    argparse quotes a bad value (``unrecognized arguments: ...``) as it was typed: the
    line is made terminal-safe and cut to :data:`MAX_MESSAGE` characters."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(one_line(f"{self.prog}: {message}") + "\n")
        sys.exit(2)


def port_number(text: str) -> int:
    """argparse type for a TCP/UDP port: a whole number from 1 to 65535, in the digits
    0-9 (``int()`` also reads ``٧٤٠٠`` and ``７４００``; ``bind()`` in C never would)."""
    value = whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"a port is a number from 1 to 65535, not {shown(text)}{digits_hint(text)}"
        )
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"a port is a number from 1 to 65535; {value} is outside that range"
        )
    return value


def seconds_type(least: float = 0.0, most: float = MOST_SECONDS) -> Callable[[str], float]:
    """argparse type for seconds: a number written in the digits 0-9 (with a point and an
    exponent), more than 0, at least ``least`` and at most ``most``. ``float()`` also
    reads other scripts' digits, ``1_0``, ``nan`` and ``inf``: none of them is taken."""

    def seconds(text: str) -> float:
        plain = text.strip()
        try:
            if not plain.isascii() or "_" in plain:  # float() reads ٢ and 1_0 too
                raise ValueError(text)
            value = float(plain)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"seconds must be a number, not {shown(text)}{digits_hint(text)}"
            ) from None
        given = plain if len(plain) <= 30 else plain[:27] + "..."
        if not value > 0 or math.isnan(value):
            raise argparse.ArgumentTypeError(f"seconds must be more than 0, not {given}")
        if value < least:
            raise argparse.ArgumentTypeError(f"seconds must be at least {least:g}, not {given}")
        if value > most:  # inf too
            day = " (a day)" if most == 86400 else ""
            raise argparse.ArgumentTypeError(f"seconds must be at most {most:g}{day}, not {given}")
        return value

    return seconds


positive_seconds = seconds_type()
"""Seconds, more than 0 and at most a day (a duration, a scan's timeout)."""

interval_seconds = seconds_type(LEAST_INTERVAL)
"""Seconds from 0.1 to a day: a polling interval, a request's timeout."""


def safe_json(text: str) -> str:
    """JSON text (``ensure_ascii=False``) with every character a terminal could act on
    written as ``\\uXXXX``: JSON escapes the C0 controls itself, not DEL, the C1 controls
    (``\\x9b`` is a CSI to some terminals) or a right-to-left override. Only strings can
    hold such characters, where ``\\uXXXX`` means the same: the JSON is unchanged."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch in " \n":
            out.append(ch)
        elif ord(ch) > 0xFFFF:  # a surrogate pair, as JSON writes one
            code = ord(ch) - 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def lab_host_name(text: str) -> str:
    """argparse type for a lab host's name (``snapshot --host``, ``scan --from``): what a
    scenario's [[host]] may be called, else refused before any namespace is looked at."""
    from app.core.scenario import HOST_NAME_PATTERN, HOST_NAME_RULE

    if not HOST_NAME_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{shown(text, 30)} is not a lab host: {HOST_NAME_RULE}")
    return text


def listen_address(text: str) -> str:
    """argparse type for the address a server listens on (``agent --host``): an IP
    address of this machine, or ``localhost``; a name is not looked up, and an empty
    text (which bind() takes for every address) is refused."""
    import ipaddress

    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return "localhost"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"an address to listen on is an IP address of this machine, like 127.0.0.1 or "
            f"0.0.0.0, not {shown(text, 40)} (names are not looked up)"
        ) from None


def check_theme(theme: str | None) -> None:
    """``--theme NAME`` of the dashboard, the replay and the class view: a theme there is.

    Raises:
        UsageError: naming the themes there are.
    """
    from app.ui.themes import theme_names

    if theme is not None and theme not in theme_names():
        raise UsageError(
            f"there is no theme {theme!r}; choose one of: projector, "
            + ", ".join(n for n in theme_names() if n != "projector")
        )
