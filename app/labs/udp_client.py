"""``udp-client IP MESSAGE PORT``: send datagrams, print any reply.

No connect(): each datagram goes out with sendto(), so the socket stays
connection-less (ss shows UNCONN, never ESTABLISHED). Whether anyone
received it, UDP does not say; a reply within ``--timeout`` is printed.

Output lines::

    Sent to 127.0.0.1:6000 from 0.0.0.0:51234: hello
    Reply from 127.0.0.1:6000: hello
    No reply within 1 s (UDP does not tell whether anyone received it)
    Holding the socket for 5 s                        (with --hold)

Run alone: ``python -m app.labs.udp_client 127.0.0.1 hello 6000``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence

from app.labs._args import LabParser, check_ip, check_port, int_checker, seconds_checker
from app.labs._common import (
    LabError,
    bind_error,
    connect_error,
    endpoint,
    family_of,
    new_socket,
    peer_endpoint,
    run_main,
    say,
    shown_text,
    sockaddr,
)

PROGRAM = "udp-client"


def build_parser() -> LabParser:
    parser = LabParser(
        PROGRAM,
        "A UDP client: send MESSAGE as datagrams, print any reply.",
        usage="%(prog)s IP MESSAGE PORT "
        "[--bind ADDR] [--count N] [--hold SECONDS] [--timeout SECONDS]",
    )
    parser.add_argument("ip", metavar="IP", help="server IP address (a number, not a name)")
    parser.add_argument("message", metavar="MESSAGE", help="text to send")
    parser.add_argument("port", metavar="PORT", help="server port, 1-65535")
    parser.add_argument("--bind", metavar="ADDR", help="local IP address to bind first")
    parser.add_argument("--count", metavar="N", default="1", help="send N datagrams")
    parser.add_argument(
        "--hold",
        metavar="SECONDS",
        help="keep the socket open SECONDS after sending (and after any reply), printing "
        "late replies, so that `observatory snapshot --udp` and the dashboard can show it "
        "(UNCONN: UDP has no connection); without it the client exits at once and its "
        "socket is gone before anyone looks",
    )
    parser.add_argument(
        "--timeout", metavar="SECONDS", default="1", help="wait this long for each reply"
    )
    parser.check("ip", check_ip)
    parser.check("port", check_port)
    parser.check("bind", check_ip)
    parser.check("count", int_checker("--count", 1, 1_000_000))
    parser.check("hold", seconds_checker("--hold", allow_zero=True))
    parser.check("timeout", seconds_checker("--timeout", allow_zero=False))
    return parser


def _receive(sock: socket.socket, seconds: float) -> bool:
    """Print the next reply if one comes within ``seconds``; True if one did."""
    if seconds <= 0:
        return False
    sock.settimeout(seconds)
    try:
        data, peer = sock.recvfrom(65535)
    except TimeoutError:
        return False
    except ConnectionRefusedError:
        say("No program receives there (the machine answered: port unreachable)")
        return False
    say(f"Reply from {peer_endpoint(peer)}: {shown_text(data)}")
    return True


def run(args: argparse.Namespace) -> int:
    _family, address = sockaddr(args.ip, args.port)
    target = endpoint(args.ip, args.port)
    with new_socket(args.ip, socket.SOCK_DGRAM) as sock:
        if args.bind is not None:
            if family_of(args.bind) != family_of(args.ip):
                raise LabError(
                    f"--bind {args.bind} and {args.ip} are not the same kind of address "
                    "(IPv4 and IPv6)"
                )
            _f, local = sockaddr(args.bind, 0)
            try:
                sock.bind(local)
            except OSError as exc:
                raise bind_error(exc, args.bind, 0, "udp") from None
        data = args.message.encode("utf-8", "surrogateescape")
        for _ in range(args.count):
            try:
                sock.sendto(data, address)
            except OSError as exc:
                raise connect_error(exc, args.ip, args.port, args.timeout) from None
            source = peer_endpoint(sock.getsockname())
            say(f"Sent to {target} from {source}: {shown_text(data)}")
            if not _receive(sock, args.timeout):
                say(
                    f"No reply within {args.timeout:g} s "
                    "(UDP does not tell whether anyone received it)"
                )
        if args.hold is not None:
            say(f"Holding the socket for {args.hold:g} s")
            deadline = time.monotonic() + args.hold
            while (left := deadline - time.monotonic()) > 0:
                _receive(sock, left)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client; returns the exit code (0, 1 on any error, 128+N on signal N)."""
    return run_main(PROGRAM, build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
