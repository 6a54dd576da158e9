"""What every lab program shares: its errors, its output, its sockets, its main.

Conventions of every lab program:

* Output is line-buffered and flushed after each line, so a parent reading
  a pipe sees each line at once.
* Every error a user can cause is ONE line ``<program>: <words>`` on
  stderr and exit code 1 (:data:`EXIT_ERROR`), usage errors included.
* SIGTERM, SIGINT and SIGHUP stop the program quietly: it prints
  ``Stopped by SIGTERM`` (or the signal's name), closes its sockets and exits
  with 128 + the signal number (143, 130, 129), as a shell reports a program
  killed by that signal. A parent that sent the signal itself may count that
  as a normal end.
* The program exits when its parent dies (see
  :func:`app.labs._process.install_parent_guard`).

:func:`run_main` keeps these conventions. Here too: a failed bind() or
connect() in words (with what holds the port, from ``/proc/net``). The
process itself (name, parent, signals) is set up by :mod:`app.labs._process`;
the command line is read by :mod:`app.labs._args`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import ipaddress
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence

from app.labs import LabUsageError
from app.labs._process import Stopped, restore_handlers, start_program

EXIT_OK = 0
EXIT_ERROR = 1


class LabError(Exception):
    """A failure the user caused or can fix (port in use, refused, ...); one line of words."""


# -- busy loops ---------------------------------------------------------------------

_burn_block: bytes | None = None


def burn_cpu() -> None:
    """Burn about a millisecond of CPU, like one stretch of the lecture's ``while(1);``.

    Hashing a large buffer is pure CPU work during which hashlib releases the
    GIL. A plain Python loop would hold the GIL and starve the other threads:
    the main thread could then take seconds to run a stop signal's handler.
    """
    global _burn_block
    if _burn_block is None:
        _burn_block = bytes(1 << 20)
    hashlib.sha256(_burn_block).digest()


# -- output -------------------------------------------------------------------------

_say_lock = threading.Lock()


def say(line: str) -> None:
    """Print one line to stdout and flush it; a vanished reader is not an error."""
    with _say_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader is gone (our parent died?). Point stdout at /dev/null so
            # that neither this nor the flush at exit raises again.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
        except (OSError, ValueError):
            pass


def shown_text(data: bytes) -> str:
    """Received bytes as one printable line (control characters escaped)."""
    text = data.decode("utf-8", "replace")
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def endpoint(addr: str, port: int) -> str:
    """``127.0.0.1:6000`` or ``[::1]:6000``, as ss prints them."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def peer_endpoint(sockaddr: tuple[object, ...]) -> str:
    """An accepted/received address tuple (IPv4 or IPv6) as :func:`endpoint`."""
    return endpoint(str(sockaddr[0]), int(str(sockaddr[1])))


# What a program says when the kernel ended its connection from outside: root
# sent SOCK_DESTROY (``observatory close``, ``ss -K``) and the blocked recv()
# or send() got ECONNABORTED. The peer sees a reset.
ABORTED = "connection aborted by the kernel"


def aborted(exc: BaseException) -> bool:
    """True when ``exc`` is the kernel's ECONNABORTED on a connected socket."""
    return isinstance(exc, OSError) and exc.errno == errno.ECONNABORTED


# -- sockets ------------------------------------------------------------------------


def family_of(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def sockaddr(ip: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    """The family and socket address for an IP literal (scope ids such as ``%eth0`` kept)."""
    try:
        infos = socket.getaddrinfo(
            ip, port, family_of(ip), socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
    except socket.gaierror as exc:
        raise LabError(f"{ip} cannot be used as an address here ({exc.strerror})") from None
    family, _type, _proto, _name, addr = infos[0]
    return family, addr


def new_socket(ip: str, kind: socket.SocketKind) -> socket.socket:
    """A socket of the family of ``ip``, with a one-line error if that family is missing."""
    try:
        return socket.socket(family_of(ip), kind)
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
            raise LabError("IPv6 is not available on this machine") from None
        raise LabError(f"cannot create a socket: {_words(exc)}") from None


def _words(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def unprivileged_port_start() -> int:
    """The lowest port an ordinary user may bind (usually 1024)."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 1024


# /proc/net/tcp's state numbers (include/net/tcp_states.h), as ss names them.
_PROC_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _proc_addr(hex_addr: str) -> str:
    """A /proc/net address (``0100007F``, 32 hex digits for IPv6) as text."""
    # Each 32-bit word is printed as the host reads it (%08X): its bytes in host order.
    words = b"".join(
        struct.pack("=I", int(hex_addr[i : i + 8], 16)) for i in range(0, len(hex_addr), 8)
    )
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped) if address.ipv4_mapped is not None else str(address)


def _covers(a: str, b: str) -> bool:
    """Two local addresses a bind() would find overlapping: ``::`` (dual-stack) covers
    every address, ``0.0.0.0`` every IPv4 one; a specific IPv6 address never an IPv4 one
    (binding one sets IPV6_V6ONLY). IPv4-mapped addresses come here as IPv4."""
    if a == b or "::" in (a, b):
        return True
    return "0.0.0.0" in (a, b) and ":" not in a + b


def port_holders(
    port: int, ip: str, proto: str = "tcp", proc_root: str = "/proc"
) -> list[tuple[str, str, str, int]]:
    """Sockets of this network namespace holding ``port`` on an address overlapping ``ip``.

    Read from ``/proc/net/{tcp,tcp6}`` (or udp): ``(state, local, remote,
    inode)``, listeners first. Inode 0: no process holds it (the kernel keeps a
    closed end in TIME_WAIT or FIN_WAIT2). Empty when nothing is listed or the
    files cannot be read.
    """
    wanted = str(ipaddress.ip_address(ip.split("%", 1)[0]))
    mapped = ipaddress.ip_address(wanted)
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        wanted = str(mapped.ipv4_mapped)
    found: list[tuple[str, str, str, int]] = []
    for name in (proto, proto + "6"):
        try:
            with open(f"{proc_root}/net/{name}", encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except (OSError, ValueError):
            continue
        for line in lines:
            fields = line.split()
            try:
                local_hex, port_hex = fields[1].split(":")
                if int(port_hex, 16) != port:
                    continue
                local = _proc_addr(local_hex)
                remote_hex, remote_port_hex = fields[2].split(":")
                remote_port = int(remote_port_hex, 16)
                state = _PROC_TCP_STATES.get(fields[3], fields[3]) if proto == "tcp" else "UDP"
                inode = int(fields[9])
            except (IndexError, ValueError):
                continue
            if not _covers(wanted, local):
                continue
            remote = endpoint(_proc_addr(remote_hex), remote_port) if remote_port else "*"
            found.append((state, endpoint(local, port), remote, inode))
    found.sort(key=lambda row: (row[0] != "LISTEN", row[3] == 0))
    return found


def _tcp_in_use(ip: str, port: int, reuseaddr: bool) -> LabError:
    """Words for EADDRINUSE of a TCP bind: what holds the port, as the kernel lists it."""
    see = f"`observatory snapshot --all --port {port}`"
    holders = port_holders(port, ip, "tcp")
    if not holders:
        return LabError(
            f"port {port} is already in use on {ip}, though the kernel lists no socket on it "
            "now (a socket that is only bound, not listening, is not listed; or the holder "
            "has just gone): try again, or pick another port"
        )
    state, local, remote, inode = holders[0]
    if state == "LISTEN":
        return LabError(
            f"port {port} is already in use on {ip}: a program is listening on {local} "
            f"(find it with `observatory snapshot --listen --port {port}`); stop it or pick "
            "another port"
        )
    held = (
        "no process has it: the kernel keeps the end of a connection whose program closed it "
        "or was killed"
        if inode == 0
        else "a program still has this connection open"
    )
    if state == "TIME_WAIT":
        how_long = "for about 60 s after the close"
    elif state == "FIN_WAIT2" and inode == 0:
        # The kernel drops an orphaned FIN_WAIT2 after tcp_fin_timeout; if the peer closes
        # first, TIME_WAIT takes it over for as long again.
        how_long = (
            "about 60 s after the close; if the peer closes meanwhile, TIME_WAIT holds "
            "the port about 60 s more"
        )
    else:
        how_long = "until it is closed"
    reuse = (
        "this server sets SO_REUSEADDR, so the program that had the port did not, and Linux "
        "needs both"
        if reuseaddr
        else "set SO_REUSEADDR before bind() in both programs to share it"
    )
    return LabError(
        f"port {port} is still held on {ip}: {local} -> {remote} is in {state} "
        f"({held}; it stays {how_long}); {reuse}: wait, or pick another port "
        f"(see it with {see})"
    )


def bind_error(
    exc: OSError, ip: str, port: int, proto: str = "tcp", *, reuseaddr: bool = False
) -> LabError:
    """Words for a failed bind() of ``ip``:``port`` (``reuseaddr``: we set SO_REUSEADDR)."""
    where = endpoint(ip, port) if port else ip
    if exc.errno == errno.EADDRINUSE and port:
        if proto == "udp":
            return LabError(
                f"port {port} is already in use on {ip}: another program has it "
                f"(find it with `observatory snapshot --udp --port {port}`)"
            )
        return _tcp_in_use(ip, port, reuseaddr)
    if exc.errno == errno.EACCES:
        start = unprivileged_port_start()
        if 0 < port < start:
            return LabError(f"ports below {start} need root: try a port from {start} to 65535")
        return LabError(f"permission denied to use {where}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return LabError(f"{ip} is not an address of this machine (see `ip addr`)")
    if exc.errno == errno.EINVAL:
        return LabError(f"{where} cannot be bound here ({_words(exc)})")
    return LabError(f"cannot bind {where}: {_words(exc)}")


def connect_error(exc: OSError, ip: str, port: int, timeout: float) -> LabError:
    """Words for a failed connect() to ``ip``:``port``."""
    where = endpoint(ip, port)
    if isinstance(exc, TimeoutError) and exc.errno is None:  # socket timeout (ours)
        return LabError(
            f"no answer from {where} within {timeout:g} s "
            "(is the address right, is that machine up, is a firewall dropping it?)"
        )
    if exc.errno == errno.ECONNREFUSED:
        return LabError(f"connection refused: nothing listens on {where}")
    if exc.errno == errno.ETIMEDOUT:
        return LabError(f"no answer from {where} (connection timed out)")
    if exc.errno == errno.ENETUNREACH:
        return LabError(f"network unreachable: this machine has no route to {ip} (see `ip route`)")
    if exc.errno == errno.EHOSTUNREACH:
        return LabError(f"host unreachable: nothing answers for {ip} (try `ping {ip}`)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return LabError(f"cannot connect to {where}: that address cannot be reached from here")
    if exc.errno == errno.EACCES:
        return LabError(f"permission denied connecting to {where} (a broadcast address?)")
    return LabError(f"cannot connect to {where}: {_words(exc)}")


# -- running ------------------------------------------------------------------------


def run_main(
    program: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    body: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
) -> int:
    """Parse, set the process up, run ``body``; turn every user error into one line.

    Returns the exit code: 0 normal, 1 any error (usage included), 128+N
    when stopped by signal N.
    """
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except LabUsageError as exc:
        _error_line(program, str(exc))
        return EXIT_ERROR
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    previous: dict[int, object] = {}
    try:
        previous = start_program(program)
        return body(args)
    except LabError as exc:
        _error_line(program, str(exc))
        return EXIT_ERROR
    except Stopped as exc:
        say(f"Stopped by {signal.Signals(exc.signum).name}")
        return exc.exit_code
    finally:
        restore_handlers(previous)


def _error_line(program: str, message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{program}: {message}\n")
        sys.stderr.flush()
