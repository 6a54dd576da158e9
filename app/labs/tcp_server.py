"""``tcp-server PORT``: the lecture's iterative TCP server.

bind(), listen(backlog), then accept one client, print ``Client: <ip>:<port>``
and serve that client until it leaves; only then accept the next. A second
client's handshake still completes: it waits in the listener's backlog
(``ss -ltn`` shows Recv-Q 1 on the LISTEN row). ``--concurrent`` serves every
client in its own thread instead.

Output lines (one each, flushed at once)::

    Listening on 127.0.0.1:6000 (iterative, backlog 5, handler hold)
    Client: 127.0.0.1:39846          (IPv6: Client: [::1]:39846)
    Client gone: 127.0.0.1:39846
    Client gone: 127.0.0.1:39846 (connection aborted by the kernel)   (SOCK_DESTROY)
    Stopped by SIGTERM

Run alone: ``python -m app.labs.tcp_server 6000``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import socket
import sys
from collections.abc import Sequence

from app.labs._args import LabParser, add_server_address, int_checker
from app.labs._common import (
    ABORTED,
    LabError,
    aborted,
    bind_error,
    burn_cpu,
    endpoint,
    new_socket,
    peer_endpoint,
    run_main,
    say,
    sockaddr,
)
from app.labs._process import start_helper_thread

PROGRAM = "tcp-server"
HANDLERS = ("hold", "echo", "busy")


def build_parser() -> LabParser:
    parser = LabParser(
        PROGRAM,
        "The lecture's TCP server: accept one client, serve it until it leaves, "
        "then accept the next.",
        usage="%(prog)s PORT "
        "[--bind ADDR] [--backlog N] [--handler {hold,echo,busy}] [--concurrent] "
        "[--no-reuseaddr]",
    )
    add_server_address(parser, "port to listen on, 1-65535")
    parser.add_argument("--backlog", metavar="N", default="5", help="listen() backlog (default 5)")
    parser.add_argument(
        "--handler",
        choices=HANDLERS,
        default="hold",
        help="hold: read and discard (default); echo: send back; "
        "busy: spin like the lecture's while(1), using CPU",
    )
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="serve each client in its own thread instead of one at a time",
    )
    parser.add_argument(
        "--no-reuseaddr",
        action="store_true",
        help="as the lecture's tcp_server1: no SO_REUSEADDR, so a restart fails while the "
        "old server's connections linger (FIN_WAIT2, TIME_WAIT: about a minute)",
    )
    parser.check("backlog", int_checker("--backlog", 0, 65535))
    return parser


def _hold(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def _busy(conn: socket.socket) -> None:
    # The lecture's handle_client() is `while (1);`: burn CPU, but look at the
    # socket between rounds so that a client that leaves is still noticed.
    conn.setblocking(False)
    while True:
        burn_cpu()
        try:
            if not conn.recv(65536):
                return
        except BlockingIOError:
            continue


_SERVE = {"hold": _hold, "echo": _echo, "busy": _busy}


def handle_client(conn: socket.socket, who: str, handler: str) -> None:
    """Serve one accepted client until it disconnects, then say so."""
    why = ""
    with conn:
        try:
            _SERVE[handler](conn)
        except OSError as exc:
            # Reset by the peer, broken pipe: the client is gone either way. But
            # ECONNABORTED means nobody on the wire ended it: root closed this end
            # from outside (observatory close, ss -K), and the student should know.
            if aborted(exc):
                why = f" ({ABORTED})"
    say(f"Client gone: {who}{why}")


def serve(args: argparse.Namespace) -> int:
    family, address = sockaddr(args.bind, args.port)
    listener = new_socket(args.bind, socket.SOCK_STREAM)
    with listener:
        # Usual for servers: a TIME_WAIT left by the previous run must not block a restart
        # (the lecture's tcp_server1 does not set it: --no-reuseaddr).
        reuseaddr = not args.no_reuseaddr
        if reuseaddr:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(address)
            listener.listen(args.backlog)
        except OSError as exc:
            raise bind_error(exc, args.bind, args.port, "tcp", reuseaddr=reuseaddr) from None
        mode = "concurrent" if args.concurrent else "iterative"
        say(
            f"Listening on {endpoint(args.bind, args.port)} "
            f"({mode}, backlog {args.backlog}, handler {args.handler})"
        )
        while True:
            try:
                conn, peer = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue  # that client gave up before we took it: wait for the next
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise LabError("too many open files: cannot accept more clients") from None
                raise LabError(f"accept() failed: {exc.strerror or exc}") from None
            who = peer_endpoint(peer)
            say(f"Client: {who}")
            if args.concurrent:
                start_helper_thread(
                    functools.partial(handle_client, conn, who, args.handler), f"client {who}"
                )
            else:
                handle_client(conn, who, args.handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the exit code (0, 1 on any error, 128+N on signal N)."""
    return run_main(PROGRAM, build_parser, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
