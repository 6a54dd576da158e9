"""The agent's token and where it may listen: refusals in words, and the constant-time check.

A token file must be a regular file that only its owner may read (``mode &
0o077 == 0``), holding one word of printable ASCII (what an ``Authorization``
header can carry). Without a token the agent serves loopback only. Every
request then bears ``Authorization: Bearer TOKEN``, compared with
:func:`hmac.compare_digest` so that the time taken says nothing of how much of
a guess was right.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from collections.abc import Sequence

__all__ = ["AgentRefused", "bearer_refusal", "check_host", "host_header_refusal", "load_token"]


class AgentRefused(Exception):
    """The agent cannot start as asked; the message says why, in words."""


def load_token(path: str) -> bytes:
    """The token in ``path`` (surrounding whitespace removed), or AgentRefused in words.

    Refused: a file that is not a regular file, that group or others may read
    (mode & 0o077), that is empty, or whose token is not one word of printable ASCII.
    """
    try:
        # O_NONBLOCK: a FIFO (not a regular file, refused below) must not block the open.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or "not a file name"
        raise AgentRefused(f"cannot read the token file {path}: {reason}") from None
    info = os.fstat(fd)  # before fdopen(), which refuses a folder with its own words
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise AgentRefused(f"the token file {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise AgentRefused(
                f"the token file {path} may be read by others (mode {mode:04o}): anyone on "
                f"this machine could read the token. Make it yours alone: chmod 600 {path}"
            )
        data = f.read(4097)
    token = data.strip()
    if not token:
        raise AgentRefused(f"the token file {path} is empty: put a long random token in it")
    if len(token) > 4096 or not all(0x21 <= b <= 0x7E for b in token):
        raise AgentRefused(
            f"the token in {path} must be one word of printable ASCII (no spaces), at most "
            "4096 characters: e.g. the output of `openssl rand -hex 32`"
        )
    return token


def check_host(host: str, token: bytes | None) -> None:
    """Without a token only a loopback address may be served: AgentRefused otherwise."""
    if token is not None:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        shown = _shown(host)
        raise AgentRefused(
            f"without --token-file the agent serves this machine only (127.0.0.1 or ::1),"
            f" not {shown}: anyone who can reach {shown} could read this machine's sockets"
            " and processes. Give --token-file FILE (a file of your own, mode 600) to serve"
            " the room"
        )


def bearer_refusal(given: Sequence[str], token: bytes | None) -> str | None:
    """None when the ``Authorization`` header values ``given`` bear ``token`` (or no token is
    needed), else why not, in words."""
    if token is None:
        return None
    if not given:
        return "this agent needs a token: send Authorization: Bearer TOKEN"
    scheme, _, value = given[0].strip().partition(" ")
    if len(given) > 1 or scheme.lower() != "bearer":
        return "send one Authorization: Bearer TOKEN header"
    # Header values are decoded as latin-1 by http.client: that encoding gives the bytes back.
    if not hmac.compare_digest(value.strip().encode("latin-1", "replace"), token):
        return "wrong token"
    return None


def host_header_refusal(host_header: str | None, token: bytes | None) -> str | None:
    """Without a token, a request must name this machine in its ``Host`` header
    (``localhost``, a loopback address): a web page whose own name an attacker points
    at 127.0.0.1 (DNS rebinding) would otherwise read the agent from the student's
    browser. None when the request may go on."""
    if token is not None:
        return None
    name = (host_header or "").strip()
    if name.startswith("["):  # [::1]:9107
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() == "localhost":
        return None
    try:
        if ipaddress.ip_address(name).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"this agent has no token and answers only requests for this machine "
        f"(Host: localhost or a loopback address), not "
        f"{'no Host' if host_header is None else _shown(host_header)}: "
        "give it --token-file FILE to serve others"
    )


def _shown(text: str, limit: int = 60) -> str:
    """A host as a refusal names it: as typed when it is a plain name or address, else
    quoted (escapes for control characters), and cut to ``limit`` characters."""
    cut = text if len(text) <= limit else text[: limit - 3] + "..."
    plain = cut.isascii() and cut.isprintable() and " " not in cut and cut != ""
    return cut if plain else repr(cut)
