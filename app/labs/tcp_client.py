"""``tcp-client IP MESSAGE PORT``: the lecture's client, in the lecture's argument order.

connect() (the OS picks the local port: no bind), send MESSAGE, then hold the
connection open: until stopped (default) or ``--hold SECONDS``. ``--busy``
spins while holding, like the lecture's client loop.

Output lines::

    Connected 127.0.0.1:39846 -> 127.0.0.1:6000   (IPv6: [::1]:39846 -> [::1]:6000)
    Sent: hello                                    (--count 3: Sent: hello (3 times))
    Holding the connection until stopped           (or: ... for 2 s)
    Received: hello                                (whatever the server sends back)
    Server closed the connection                   (exit 0; "(reset)" appended on RST)
    Connection aborted by the kernel (...)         (root closed it: SOCK_DESTROY; exit 0)
    Closed the connection                          (after --hold SECONDS; exit 0)

Run alone: ``python -m app.labs.tcp_client 127.0.0.1 hello 6000``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence

from app.labs._args import LabParser, check_ip, check_port, int_checker, seconds_checker
from app.labs._common import (
    ABORTED,
    LabError,
    aborted,
    bind_error,
    burn_cpu,
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

PROGRAM = "tcp-client"


def build_parser() -> LabParser:
    parser = LabParser(
        PROGRAM,
        "The lecture's TCP client: connect, send MESSAGE, hold the connection.",
        usage="%(prog)s IP MESSAGE PORT "
        "[--bind ADDR] [--count N] [--hold SECONDS] [--busy] [--timeout SECONDS]",
    )
    parser.add_argument("ip", metavar="IP", help="server IP address (a number, not a name)")
    parser.add_argument("message", metavar="MESSAGE", help="text to send")
    parser.add_argument("port", metavar="PORT", help="server port, 1-65535")
    parser.add_argument(
        "--bind", metavar="ADDR", help="local IP address to bind first (port still chosen by OS)"
    )
    parser.add_argument("--count", metavar="N", default="1", help="send MESSAGE N times")
    parser.add_argument(
        "--hold", metavar="SECONDS", help="close after SECONDS (default: hold until stopped)"
    )
    parser.add_argument(
        "--busy", action="store_true", help="spin while holding, using CPU like the lecture's loop"
    )
    parser.add_argument(
        "--timeout", metavar="SECONDS", default="5", help="give up connecting after (default 5)"
    )
    parser.check("ip", check_ip)
    parser.check("port", check_port)
    parser.check("bind", check_ip)
    parser.check("count", int_checker("--count", 1, 1_000_000))
    parser.check("hold", seconds_checker("--hold", allow_zero=True))
    parser.check("timeout", seconds_checker("--timeout", allow_zero=False))
    return parser


def _connect(args: argparse.Namespace) -> socket.socket:
    _family, address = sockaddr(args.ip, args.port)
    sock = new_socket(args.ip, socket.SOCK_STREAM)
    try:
        if args.bind is not None:
            if family_of(args.bind) != family_of(args.ip):
                kinds = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
                raise LabError(
                    f"--bind {args.bind} is {kinds[family_of(args.bind)]} but {args.ip} is "
                    f"{kinds[family_of(args.ip)]}: use two addresses of the same kind"
                )
            _f, local = sockaddr(args.bind, 0)
            try:
                sock.bind(local)
            except OSError as exc:
                raise bind_error(exc, args.bind, 0, "tcp") from None
        sock.settimeout(args.timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            raise connect_error(exc, args.ip, args.port, args.timeout) from None
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def _wait(sock: socket.socket, deadline: float | None, busy: bool) -> bytes | None:
    """Next bytes from the server (b"" when it closed), or None when the deadline passed."""
    if busy:
        sock.setblocking(False)
        while deadline is None or time.monotonic() < deadline:
            burn_cpu()
            try:
                return sock.recv(65536)
            except BlockingIOError:
                continue
        return None
    if deadline is None:
        sock.settimeout(None)
    else:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None


# ECONNABORTED on a connected socket: the server did not end it (it gets a
# reset); root on this machine did, with SOCK_DESTROY. Exit 0 as for a reset:
# the connection ended, the program did nothing wrong.
_ABORTED_LINE = (
    f"{ABORTED.capitalize()} (closed from outside this program, as observatory close or ss -K do)"
)


def run(args: argparse.Namespace) -> int:
    with _connect(args) as sock:
        say(f"Connected {peer_endpoint(sock.getsockname())} -> {endpoint(args.ip, args.port)}")
        data = args.message.encode("utf-8", "surrogateescape")
        try:
            for _ in range(args.count):
                sock.sendall(data)
        except OSError as exc:  # EPIPE / ECONNRESET: the server went away already
            say(_ABORTED_LINE if aborted(exc) else "Server closed the connection")
            return 0
        times = "" if args.count == 1 else f" ({args.count} times)"
        say(f"Sent: {shown_text(data)}{times}")
        if args.hold is None:
            say("Holding the connection until stopped")
            deadline = None
        else:
            say(f"Holding the connection for {args.hold:g} s")
            deadline = time.monotonic() + args.hold
        while True:
            try:
                received = _wait(sock, deadline, args.busy)
            except ConnectionResetError:
                say("Server closed the connection (reset)")
                return 0
            except OSError as exc:
                say(
                    _ABORTED_LINE
                    if aborted(exc)
                    else f"Server closed the connection ({exc.strerror or exc})"
                )
                return 0
            if received is None:
                break
            if not received:
                say("Server closed the connection")
                return 0
            say(f"Received: {shown_text(received)}")
    say("Closed the connection")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client; returns the exit code (0, 1 on any error, 128+N on signal N)."""
    return run_main(PROGRAM, build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
