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

import contextlib
import dataclasses
import functools
import os
import pwd
import socket
import struct
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import psutil

from app.core import diag
from app.core.model import TCP_STATES, UDP_STATE, Owner, RawSocket, Snapshot, Socket
from app.core.services import service_name

PROTOCOLS = ("tcp", "tcp6", "udp", "udp6")


class SocketSource(Protocol):
    """Anything that can take a snapshot of the machine's sockets."""

    def poll(self) -> Snapshot: ...


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


# (port, proto) -> name: two C-level cache lookups per socket on a first poll.
_port_name = functools.lru_cache(maxsize=1 << 17)(service_name)


def _service(local_port: int, remote_port: int | None, proto: str) -> str | None:
    """The local port's service name, else the remote port's."""
    name = _port_name(local_port, proto)
    if name is None and remote_port is not None:
        name = _port_name(remote_port, proto)
    return name


class _OwnedSource:
    """What both readers share: the inode -> pid map kept between polls, and the records.

    A reader gives, per poll, one hashable key per socket that changes when
    anything shown of the socket changes, and a way to decode a key. A socket
    whose key was seen last poll, and whose owner is still the same, is reused
    as it was: a poll where little changed builds little.

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
        self._owner_pids: set[int] = set()
        self._names: dict[int, str | None] = {}  # each owner's name at the last poll
        self._unresolved: set[int] = set()
        self._last_walk = 0.0
        self._procs: dict[int, tuple[str | None, _ProcInfo]] = {}
        self._users: dict[int, str | None] = {}
        self._records: dict[Hashable, Socket] = {}  # last poll's sockets by their key
        self.walks = 0  # how many full /proc/*/fd walks were made (for tests and bench)

    # -- what a reader provides -------------------------------------------------
    def _read(self) -> tuple[list[Hashable], set[int]]:
        """This poll's socket keys, and the inodes (not 0) of those not seen last poll."""
        raise NotImplementedError

    def _new_socket(self, key: Hashable, infos: dict[int, _ProcInfo]) -> Socket:
        """The record of a socket whose key was not seen last poll."""
        raise NotImplementedError

    # -- owners ---------------------------------------------------------------
    def _walk_fds(self, pids: list[int]) -> None:
        """Map every socket inode held by a readable process to its (lowest) pid."""
        mapping: dict[int, int] = {}
        readlink = os.readlink
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        for pid in pids:
            try:
                fd_dir = os.open(f"/proc/{pid}/fd", flags)
            except OSError:  # gone, or not ours to read
                continue
            try:
                fds = os.listdir(fd_dir)
                for fd in fds:
                    try:
                        # readlinkat() relative to the open folder: the kernel does
                        # not look up /proc/PID/fd again for each descriptor.
                        target = readlink(fd, dir_fd=fd_dir)
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        inode = int(target[8:-1])
                        if inode not in mapping:  # pids ascend: keep the lowest (the parent)
                            mapping[inode] = pid
            except OSError:
                pass
            finally:
                os.close(fd_dir)
        self._inode_pid = mapping
        self._owner_pids = set(mapping.values())
        self._last_walk = time.monotonic()
        self.walks += 1

    @staticmethod
    def _pids() -> list[int]:
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())

    def _resolve_owners(self, fresh: set[int]) -> bool:
        """Keep the inode -> pid map true; whether it was rebuilt (a walk was made).

        Args:
            fresh: the inodes of sockets not seen last poll (the others' owners
                are known, or known to be hidden).
        """
        pids = self._pids()
        live = set(pids)
        stale = not self._owner_pids <= live  # an owner exited: who holds its sockets now?
        missing = fresh - self._inode_pid.keys() - self._unresolved
        due = time.monotonic() - self._last_walk >= self.rescan_every
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]
        if stale or missing or due:
            self._walk_fds(pids)
            # Until the next walk (at most rescan_every), these are known to be hidden.
            self._unresolved = fresh - self._inode_pid.keys()
            return True
        return False

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
        keys, fresh = self._read()
        walked = self._resolve_owners(fresh)
        infos: dict[int, _ProcInfo] = {}  # each owner read once per poll
        names = {pid: self._info(pid, infos).name for pid in self._owner_pids}
        # Without a new walk every socket seen last poll has the owner it had, unless
        # a process changed its name (exec): then every socket is checked.
        same_owners = not walked and names == self._names
        self._names = names
        previous = self._records
        current: dict[Hashable, Socket] = {}
        sockets: list[Socket] = []
        inode_pid = self._inode_pid
        for key in keys:
            sock = previous.get(key)
            if sock is None:
                sock = self._new_socket(key, infos)
            elif not same_owners and (
                (inode_pid.get(sock.inode) if sock.inode else None) != sock.pid
                or (sock.pid is not None and names.get(sock.pid) != sock.process)
            ):  # the same socket, another owner (accept(), a fork, an exec)
                sock = self._with_owner(sock, infos)
            current[key] = sock
            sockets.append(sock)
        self._records = current
        return Snapshot(
            taken_at=taken_at, sockets=tuple(sockets), duration=time.perf_counter() - started
        )

    def _owner_of(
        self, inode: int, infos: dict[int, _ProcInfo]
    ) -> tuple[int | None, Owner, str | None, tuple[str, ...]]:
        pid = self._inode_pid.get(inode) if inode else None
        if pid is not None:
            info = self._info(pid, infos)
            return pid, "process", info.name, info.cmdline
        return None, "hidden" if inode else "kernel", None, ()

    def _with_owner(self, sock: Socket, infos: dict[int, _ProcInfo]) -> Socket:
        pid, owner, name, cmdline = self._owner_of(sock.inode, infos)
        return dataclasses.replace(sock, pid=pid, owner=owner, process=name, cmdline=cmdline)

    def _info(self, pid: int, infos: dict[int, _ProcInfo]) -> _ProcInfo:
        info = infos.get(pid)
        if info is None:
            info = infos[pid] = self._proc_info(pid)
        return info

    def _build(self, raw: RawSocket, infos: dict[int, _ProcInfo]) -> Socket:
        pid, owner, name, cmdline = self._owner_of(raw.inode, infos)
        service = _service(raw.local_port, raw.remote_port, raw.proto)
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
            backlog=raw.backlog,
            rtt_ms=None if raw.rtt_us is None else raw.rtt_us / 1000,
            cwnd=raw.cwnd,
            retrans=raw.retrans,
            bytes_sent=raw.bytes_sent,
            bytes_received=raw.bytes_received,
        )


class ProcNetSource(_OwnedSource):
    """A socket source reading ``/proc/net/*`` text: the fallback where netlink is missing.

    It knows no backlog limit and no tcp_info: those fields stay None.
    """

    name = "/proc/net"

    def _read(self) -> tuple[list[Hashable], set[int]]:
        keys = read_line_keys(self.protos)
        known = self._records
        return list(keys), {int(k[6]) for k in keys if k not in known} - {0}

    def _new_socket(self, key: Hashable, infos: dict[int, _ProcInfo]) -> Socket:
        return self._build(decode_line(key), infos)  # type: ignore[arg-type]


class DiagSource(_OwnedSource):
    """The default socket source: the kernel's netlink sock_diag, as ``ss`` reads it.

    Every socket of the network namespace, other users' included, with the
    listen() backlog limit and, for TCP connections, tcp_info (RTT, window,
    retransmissions, bytes). The key of a socket is the bytes of its message
    that a row shows (not the timers), so an unchanged socket costs a dict
    lookup.

    Raises:
        diag.DiagUnavailable: on construction, where netlink sock_diag is missing.
    """

    name = "netlink sock_diag"

    def __init__(
        self,
        protos: Iterable[str] = PROTOCOLS,
        rescan_every: float = 5.0,
        *,
        open_socket: Callable[[], socket.socket] = diag.open_socket,
        host: str | None = None,
    ) -> None:
        super().__init__(protos, rescan_every)
        # A lab host's sockets: a netlink socket made inside its network namespace
        # (app.core.netns) dumps that namespace's, and each is marked with the host.
        self._sock = open_socket()
        self._open_socket = open_socket
        self.host = host
        self.reopened = 0  # how many times the netlink socket failed and was opened again
        self._payloads: dict[bytes, tuple[str, bytes, tuple[int, int]]] = {}

    def _read(self) -> tuple[list[Hashable], set[int]]:
        try:
            return self._dump()
        except OSError as exc:
            failure = exc
        # The netlink socket failed mid-run (closed, a dump cut short that left replies
        # queued): a new one, once. A lab host's is opened inside its namespace, which
        # this thread is not in: that one is only said.
        with contextlib.suppress(OSError):
            self._sock.close()
        where = "this machine" if self.host is None else f"lab host {self.host}"
        why = failure.strerror or str(failure) or type(failure).__name__
        if self.host is None:
            try:
                self._sock = self._open_socket()
                self.reopened += 1
                return self._dump()
            except OSError as exc:
                why = exc.strerror or str(exc) or type(exc).__name__
        raise diag.DiagUnavailable(
            f"the sockets of {where} cannot be read now (netlink sock_diag: {why})"
        )

    def _dump(self) -> tuple[list[Hashable], set[int]]:
        keys: list[bytes] = []
        inodes: set[int] = set()
        fresh: dict[bytes, tuple[str, bytes, tuple[int, int]]] = {}
        for proto in self.protos:
            diag.dump_keys(self._sock, proto, self._records, keys, fresh, inodes)  # type: ignore[arg-type]
        self._payloads = fresh
        return keys, inodes  # type: ignore[return-value]

    def _new_socket(self, key: Hashable, infos: dict[int, _ProcInfo]) -> Socket:
        # Straight from the message's fields into the record: this runs for every
        # socket of a first poll (16,000 on a busy machine), so no RawSocket between.
        proto, payload, info = self._payloads[key]  # type: ignore[index]
        (
            lport,
            rport,
            laddr,
            raddr,
            state,
            uid,
            inode,
            recv_q,
            send_q,
            backlog,
            rtt_us,
            cwnd,
            retrans,
            sent,
            received,
        ) = diag.decode_fields(payload, proto, info)
        pid, owner, name, cmdline = self._owner_of(inode, infos)
        service = _service(lport, rport, proto)
        return Socket(
            proto,
            laddr,
            lport,
            raddr,
            rport,
            state,
            pid,
            name,
            cmdline,
            _user_name(uid, self._users),
            owner,
            service,
            inode,
            uid,
            recv_q,
            send_q,
            backlog,
            None if rtt_us is None else rtt_us / 1000,
            cwnd,
            retrans,
            sent,
            received,
            self.host,
        )

    def close(self) -> None:
        self._sock.close()


class LabSource:
    """This namespace's sockets and every lab host's, as one snapshot: each host's
    come from sock_diag opened inside its namespace and carry the host's name."""

    def __init__(self, own: SocketSource, hosts: Iterable[SocketSource]) -> None:
        self.own = own
        self.hosts = tuple(hosts)

    def poll(self) -> Snapshot:
        started = time.perf_counter()
        first = self.own.poll()
        sockets = list(first.sockets)
        for source in self.hosts:
            sockets.extend(source.poll().sockets)
        return Snapshot(
            taken_at=first.taken_at,
            sockets=tuple(sockets),
            duration=time.perf_counter() - started,
        )


def default_source(protos: Iterable[str] = PROTOCOLS) -> _OwnedSource:
    """sock_diag where the kernel has it, else ``/proc/net`` (same records, fewer fields).

    ``OBSERVATORY_SOCKETS=proc`` in the environment chooses ``/proc/net``.
    """
    if os.environ.get("OBSERVATORY_SOCKETS") == "proc":
        return ProcNetSource(protos)
    try:
        return DiagSource(protos)
    except diag.DiagUnavailable:
        return ProcNetSource(protos)
