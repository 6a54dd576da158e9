"""Argument parsing that answers a student in one line of words."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from app.labs import digits_hint, whole_number


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message}\n")
        sys.exit(2)


def port_number(text: str) -> int:
    """argparse type for a TCP/UDP port: a whole number from 1 to 65535, in the digits
    0-9 (``int()`` also reads ``٧٤٠٠`` and ``７４００``; ``bind()`` in C never would)."""
    value = whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"a port is a number from 1 to 65535, not {text!r}{digits_hint(text)}"
        )
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"a port is a number from 1 to 65535; {value} is outside that range"
        )
    return value


def positive_seconds(text: str) -> float:
    """argparse type for an interval in seconds, greater than zero."""
    try:
        if not text.strip().isascii():  # float() also reads other scripts' digits
            raise ValueError(text)
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seconds must be a number, not {text!r}{digits_hint(text)}"
        ) from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be more than 0, not {text}")
    return value
