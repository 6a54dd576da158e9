"""Read every TCP and UDP socket of the machine, and who owns it.

The kernel lists its sockets in ``/proc/net/{tcp,tcp6,udp,udp6}``, each with
the uid that created it and an inode. A process holds a socket when one of
its file descriptors (``/proc/PID/fd/N -> socket:[INODE]``) points at that
inode. That gives three honest answers where psutil gives one blank pid:

* ``process``: some process we may inspect holds the inode;
* ``hidden``: the inode is held, but by a process whose descriptors this user
  may not read (another user's, when not root);
* ``kernel``: inode 0, no file holds it at all: TIME_WAIT, an orphaned
  FIN_WAIT, or a connection whose handshake completed and that still waits
  in a listener's accept queue.

Walking every ``/proc/PID/fd`` is the expensive part (it is what makes
``psutil.net_connections()`` and ``ss -p`` slow), so the inode -> pid map is
kept between polls and the walk is only redone when a socket appears whose
owner is not known yet, when a known owner has exited, or every few seconds
to catch descriptors handed from one process to another.
"""

from __future__ import annotations

import functools
import os
import pwd
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import psutil

from app.core.model import TCP_STATES, UDP_STATE, Owner, Snapshot, Socket
from app.core.services import service_name

PROTOCOLS = ("tcp", "tcp6", "udp", "udp6")


class SocketSource(Protocol):
    """Anything that can take a snapshot of the machine's sockets."""

    def poll(self) -> Snapshot: ...


@dataclass(frozen=True, slots=True)
class RawSocket:
    """One line of /proc/net/*, decoded, before owners are known."""

    proto: str
    local_addr: str
    local_port: int
    remote_addr: str | None
    remote_port: int | None
    state: str
    uid: int
    inode: int
    recv_q: int
    send_q: int


# The fields of a /proc/net line that identify one socket's visible state:
# local, remote, state, queues, uid, inode (not the slot number nor timers).
LineKey = tuple[str, str, str, str, str, str, str]


def _line_key(proto: str, fields: list[str]) -> LineKey:
    return (proto, fields[1], fields[2], fields[3], fields[4], fields[7], fields[9])


@functools.lru_cache(maxsize=4096)
def _decode_addr(hex_addr: str) -> str:
    if len(hex_addr) == 8:
        # The kernel prints the big-endian __be32 as a native-endian integer.
        return socket.inet_ntop(socket.AF_INET, struct.pack("=I", int(hex_addr, 16)))
    words = [int(hex_addr[i : i + 8], 16) for i in range(0, 32, 8)]
    return socket.inet_ntop(socket.AF_INET6, struct.pack("=4I", *words))


def decode_line(key: LineKey) -> RawSocket:
    """Decode the fields of one /proc/net line (as picked by the line key)."""
    proto, local, remote, state_hex, queues, uid, inode = key
    local_hex, _, lport_hex = local.partition(":")
    remote_hex, _, rport_hex = remote.partition(":")
    tx_hex, _, rx_hex = queues.partition(":")
    rport = int(rport_hex, 16)
    if proto.startswith("tcp"):
        state_no = int(state_hex, 16)
        state = TCP_STATES[state_no - 1] if 1 <= state_no <= len(TCP_STATES) else "NONE"
        if state == "NEW_SYN_RECV":
            state = "SYN_RECV"
    else:
        state = UDP_STATE
    return RawSocket(
        proto=proto,
        local_addr=_decode_addr(local_hex),
        local_port=int(lport_hex, 16),
        remote_addr=_decode_addr(remote_hex) if rport else None,
        remote_port=rport or None,
        state=state,
        uid=int(uid),
        inode=int(inode),
        recv_q=int(rx_hex, 16),
        send_q=int(tx_hex, 16),
    )


def _line_keys(text: str, proto: str) -> Iterator[LineKey]:
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 10:
            yield _line_key(proto, fields)


def parse_proc_net(text: str, proto: str) -> Iterator[RawSocket]:
    """Decode the text of one ``/proc/net/<proto>`` file."""
    return (decode_line(key) for key in _line_keys(text, proto))


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:  # IPv6 disabled, or no such protocol
        return ""


def read_line_keys(protos: Iterable[str] = PROTOCOLS, proc_root: str = "/proc") -> list[LineKey]:
    """The line keys of every socket of the given protocols in this network namespace."""
    out: list[LineKey] = []
    for proto in protos:
        out.extend(_line_keys(_read(f"{proc_root}/net/{proto}"), proto))
    return out


@dataclass(slots=True)
class _ProcInfo:
    name: str | None
    cmdline: tuple[str, ...]


def _user_name(uid: int, cache: dict[int, str | None]) -> str | None:
    if uid not in cache:
        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = str(uid)
    return cache[uid]


class ProcNetSource:
    """A socket source reading ``/proc/net/*`` with an inode -> pid map kept between polls.

    Args:
        protos: which of tcp, tcp6, udp, udp6 to read.
        rescan_every: seconds after which the whole ``/proc/*/fd`` walk is
            redone even if nothing looks new (descriptors passed between
            processes, or a parent that forked and closed its copy).
    """

    def __init__(self, protos: Iterable[str] = PROTOCOLS, rescan_every: float = 5.0) -> None:
        self.protos = tuple(protos)
        self.rescan_every = rescan_every
        self._inode_pid: dict[int, int] = {}
        self._unresolved: set[int] = set()
        self._last_walk = 0.0
        self._procs: dict[int, tuple[str | None, _ProcInfo]] = {}
        self._users: dict[int, str | None] = {}
        self._lines: dict[LineKey, Socket] = {}  # last poll's sockets by their line
        self.walks = 0  # how many full /proc/*/fd walks were made (for tests and bench)

    # -- owners ---------------------------------------------------------------
    def _walk_fds(self, pids: list[int]) -> None:
        """Map every socket inode held by a readable process to its (lowest) pid."""
        mapping: dict[int, int] = {}
        for pid in pids:
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:  # gone, or not ours to read
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode not in mapping:  # pids ascend: keep the lowest (the parent)
                        mapping[inode] = pid
        self._inode_pid = mapping
        self._last_walk = time.monotonic()
        self.walks += 1

    def _resolve_owners(self, inodes: set[int]) -> None:
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        live = set(pids)
        known = self._inode_pid
        stale = not set(known.values()) <= live  # an owner exited: who holds its sockets now?
        missing = inodes - known.keys() - self._unresolved
        due = time.monotonic() - self._last_walk >= self.rescan_every
        if stale or missing or due:
            self._walk_fds(pids)
            self._unresolved = inodes - self._inode_pid.keys()
        else:
            # Sockets that closed leave the unresolved set as well.
            self._unresolved &= inodes
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]

    def _proc_info(self, pid: int) -> _ProcInfo:
        """Name and command line of ``pid``; never raises (process gone, denied, zombie)."""
        comm: str | None
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
                comm = handle.read().rstrip("\n")
        except OSError:
            comm = None
        cached = self._procs.get(pid)
        if cached is not None and cached[0] == comm:  # same program (an exec renames it)
            return cached[1]
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                name: str | None = proc.name()
                try:
                    cmdline = tuple(proc.cmdline())
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    cmdline = ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            name, cmdline = comm, ()
        info = _ProcInfo(name=name, cmdline=cmdline)
        self._procs[pid] = (comm, info)
        return info

    # -- poll -----------------------------------------------------------------
    def poll(self) -> Snapshot:
        """Read every socket now. Never raises for processes that vanish or deny access."""
        started = time.perf_counter()
        taken_at = time.time()
        keys = read_line_keys(self.protos)
        self._resolve_owners({int(k[6]) for k in keys} - {0})
        infos: dict[int, _ProcInfo] = {}  # each owner read once per poll
        previous: dict[LineKey, Socket] = self._lines
        current: dict[LineKey, Socket] = {}
        sockets: list[Socket] = []
        for key in keys:
            sock = previous.get(key)
            if sock is None or not self._still_valid(sock, infos):
                sock = self._build(decode_line(key), infos)
            current[key] = sock
            sockets.append(sock)
        self._lines = current
        return Snapshot(
            taken_at=taken_at, sockets=tuple(sockets), duration=time.perf_counter() - started
        )

    def _still_valid(self, sock: Socket, infos: dict[int, _ProcInfo]) -> bool:
        """Whether a socket built last poll from the very same line still tells the truth."""
        pid = self._inode_pid.get(sock.inode) if sock.inode else None
        if pid != sock.pid:
            return False
        return pid is None or self._info(pid, infos).name == sock.process

    def _info(self, pid: int, infos: dict[int, _ProcInfo]) -> _ProcInfo:
        info = infos.get(pid)
        if info is None:
            info = infos[pid] = self._proc_info(pid)
        return info

    def _build(self, raw: RawSocket, infos: dict[int, _ProcInfo]) -> Socket:
        pid = self._inode_pid.get(raw.inode) if raw.inode else None
        owner: Owner
        name: str | None = None
        cmdline: tuple[str, ...] = ()
        if pid is not None:
            owner = "process"
            info = self._info(pid, infos)
            name, cmdline = info.name, info.cmdline
        elif raw.inode:
            owner = "hidden"
        else:
            owner = "kernel"
        service = service_name(raw.local_port, raw.proto)
        if service is None and raw.remote_port is not None:
            service = service_name(raw.remote_port, raw.proto)
        return Socket(
            proto=raw.proto,
            local_addr=raw.local_addr,
            local_port=raw.local_port,
            remote_addr=raw.remote_addr,
            remote_port=raw.remote_port,
            state=raw.state,
            pid=pid,
            process=name,
            cmdline=cmdline,
            user=_user_name(raw.uid, self._users),
            owner=owner,
            service=service,
            inode=raw.inode,
            uid=raw.uid,
            recv_q=raw.recv_q,
            send_q=raw.send_q,
        )

