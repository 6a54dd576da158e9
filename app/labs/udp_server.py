"""``udp-server PORT``: receive datagrams and echo each one back.

The contrast with TCP is the lesson: no listen(), no accept(), no
connection. ss shows one UNCONN socket, never LISTEN or ESTABLISHED.

Output lines::

    Receiving on 127.0.0.1:6000 (UDP: no listen, no connections)
    From 127.0.0.1:51234: hello        (IPv6: From [::1]:51234: hello)
    Stopped by SIGTERM

Run alone: ``python -m app.labs.udp_server 6000``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from collections.abc import Sequence

from app.labs._args import LabParser, add_server_address
from app.labs._common import (
    bind_error,
    endpoint,
    new_socket,
    peer_endpoint,
    run_main,
    say,
    shown_text,
    sockaddr,
)

PROGRAM = "udp-server"


def build_parser() -> LabParser:
    parser = LabParser(
        PROGRAM,
        "A UDP echo server: print each datagram and send it back.",
        usage="%(prog)s PORT [--bind ADDR]",
    )
    add_server_address(parser, "port to receive on, 1-65535")
    return parser


def serve(args: argparse.Namespace) -> int:
    _family, address = sockaddr(args.bind, args.port)
    with new_socket(args.bind, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(address)
        except OSError as exc:
            raise bind_error(exc, args.bind, args.port, "udp") from None
        say(f"Receiving on {endpoint(args.bind, args.port)} (UDP: no listen, no connections)")
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                # An ICMP error from an earlier reply can surface here; it says
                # nothing about the next datagram.
                continue
            say(f"From {peer_endpoint(peer)}: {shown_text(data)}")
            # The sender is gone or unreachable: UDP does not care.
            with contextlib.suppress(OSError):
                sock.sendto(data, peer)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the exit code (0, 1 on any error, 128+N on signal N)."""
    return run_main(PROGRAM, build_parser, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
