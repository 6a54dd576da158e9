"""Several lab hosts on one machine: each a Linux network namespace, all on one lab network.

A :class:`LabNetwork` makes, for hosts such as ``server 10.0.2.15/24`` and
``client 10.0.2.16/24``, one namespace per host (``obs<PID>-<name>``, PID being
this run's) and a switch namespace ``obs<PID>-sw`` holding a bridge; each host's
``eth0`` is one end of a veth pair whose other end (``o<PID>s<i>``) is a port of
that bridge. Every link is created straight inside the namespaces (``ip -n``,
``ip link add ... netns ...``), so nothing ever appears in the machine's own
namespace: no link, no address, no route, and a lab host has no default route,
so traffic between lab hosts never leaves them. It is made with iproute2's
``ip`` through :mod:`subprocess` rather than pyroute2: no new dependency, and
the commands (kept in :attr:`LabNetwork.commands`) are the ones a student
types, as Mininet does. Removing a namespace removes its links, so
:meth:`LabNetwork.destroy` is ``ip netns del`` of each; it is idempotent,
thread-safe, runs from ``atexit`` and from :func:`destroy_all`, which signal
handlers call. A run killed by SIGKILL cannot clean up: :func:`sweep_stale`
removes the namespaces of runs whose process is gone. :func:`in_namespace`
runs a function in a short-lived thread switched into a namespace
(``setns``), so a socket it creates (sock_diag, say) lives there and may be
used from any thread afterwards. Root only: without it :meth:`LabNetwork.create`
refuses in words.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from app.core.interfaces import Address, Interface

if TYPE_CHECKING:
    from app.core.sockets import SocketSource

PREFIX = "obs"
SWITCH = "sw"
BRIDGE = "br0"
HOST_IFACE = "eth0"
NETNS_DIR = "/run/netns"
IFNAMSIZ = 15  # the kernel's limit on an interface name, without the NUL
CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
IP_TIMEOUT = 10.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_OURS = re.compile(rf"{PREFIX}(\d+)-(.+)\Z")
# Namespace names are file names in /run/netns; the kernel allows 255 bytes.
MAX_NAME = 200

NEEDS_ROOT = (
    "Lab hosts need root: each host is a network namespace, and only root may make"
    " one and give it addresses. Run the observatory again with sudo (for example"
    " `sudo .venv/bin/observatory ...`), or use a scenario without [[host]] tables,"
    " whose programs all run on this machine's own addresses."
)

T = TypeVar("T")


class NetnsError(Exception):
    """A lab network could not be made, used or removed; the message says why in words."""


class NetnsUnavailable(NetnsError):
    """Lab networks cannot be made here at all (not root, no ``ip``)."""


@dataclass(frozen=True, slots=True)
class LabHost:
    """One lab host: its name and its addresses in CIDR (``10.0.2.15/24``), all on ``eth0``."""

    name: str
    addresses: tuple[str, ...]


# --------------------------------------------------------------------------- helpers


def _run(cmd: Sequence[str], log: list[str] | None = None) -> str:
    """Run one command; its stdout. Raises :class:`NetnsError` quoting it and its error."""
    if log is not None:
        log.append(shlex.join(cmd))
    try:
        done = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=IP_TIMEOUT,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except FileNotFoundError as exc:
        raise NetnsUnavailable(
            f"`{cmd[0]}` is not installed; lab hosts are made with iproute2's `ip`"
            " (Debian: apt install iproute2)"
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"`{shlex.join(cmd)}` could not run: {exc}") from exc
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit status {done.returncode}"
        raise NetnsError(f"`{shlex.join(cmd)}` failed: {why}")
    return done.stdout


def _capabilities() -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return -1 if os.geteuid() == 0 else 0


def refusal() -> str | None:
    """Why lab hosts cannot be made by this process, in words; None if they may."""
    if os.geteuid() != 0:
        return NEEDS_ROOT
    caps = _capabilities()
    if not (caps >> CAP_SYS_ADMIN & 1 and caps >> CAP_NET_ADMIN & 1):
        return (
            "Lab hosts need the CAP_SYS_ADMIN and CAP_NET_ADMIN capabilities, which this"
            " root has not (a container's root usually has not: run it with --privileged"
            " or --cap-add SYS_ADMIN --cap-add NET_ADMIN)."
        )
    if shutil.which("ip") is None:
        return (
            "Lab hosts are made with iproute2's `ip`, which is not installed here"
            " (Debian: apt install iproute2)."
        )
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    """Every named network namespace (what ``ip netns list`` reads)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def _check_hosts(hosts: Sequence[LabHost], pid: int) -> list[LabHost]:
    """The hosts, each address parsed; :class:`NetnsError` in words for the first bad one."""
    if not hosts:
        raise NetnsError("a lab network needs at least one host; none was given")
    names: set[str] = set()
    owners: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
    out: list[LabHost] = []
    for host in hosts:
        name = host.name
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME:
            raise NetnsError(
                f"host name {name!r} is not usable: letters, digits, '.', '_' and '-' only,"
                " starting with a letter or digit"
            )
        if name == SWITCH:
            raise NetnsError(f"host name {SWITCH!r} is taken by the lab network's switch")
        if name in names:
            raise NetnsError(f"two hosts are named {name!r}; each host needs its own name")
        names.add(name)
        addresses = tuple(_check_address(name, text, owners) for text in host.addresses)
        out.append(LabHost(name, addresses))
    if len(f"o{pid}s{len(out) - 1}") > IFNAMSIZ:
        raise NetnsError(f"too many hosts ({len(out)}) for interface names of 15 characters")
    return out


def _check_address(
    host: str, text: object, owners: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str]
) -> str:
    if not isinstance(text, str) or "/" not in text:
        raise NetnsError(
            f"host {host!r}: address {text!r} needs a prefix length, as in 10.0.2.15/24"
        )
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError as exc:
        raise NetnsError(f"host {host!r}: {text!r} is not an address in CIDR: {exc}") from None
    if iface.ip in owners:
        raise NetnsError(
            f"host {host!r}: address {iface.ip} is already host {owners[iface.ip]!r}'s;"
            " two hosts on one network cannot share an address"
        )
    owners[iface.ip] = host
    return str(iface)


# --------------------------------------------------------------------------- network

_live: set[LabNetwork] = set()
_live_lock = threading.Lock()


def destroy_all() -> None:
    """Destroy every lab network this process made: for ``atexit`` and signal handlers."""
    with _live_lock:
        networks = list(_live)
    for network in networks:
        with contextlib.suppress(Exception):
            network.destroy()


atexit.register(destroy_all)


class LabNetwork:
    """Lab hosts of this run, each a network namespace, on one bridge: see the module.

    ``create(hosts)`` makes all or nothing; ``destroy()`` removes all, from any
    thread, any number of times. Also a context manager. One lab network per
    process at a time (the switch's name carries only the pid).
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._hosts: tuple[LabHost, ...] = ()
        self._made: list[str] = []  # namespaces made and not yet removed, in order
        self.commands: list[str] = []  # every command run, as a student would type it

    # -- names ----------------------------------------------------------------
    @property
    def hosts(self) -> tuple[LabHost, ...]:
        return self._hosts

    @property
    def switch_namespace(self) -> str:
        return f"{PREFIX}{self._pid}-{SWITCH}"

    def namespace(self, host_name: str) -> str:
        """The namespace of host ``host_name``; :class:`NetnsError` if there is none."""
        if not any(h.name == host_name for h in self._hosts):
            known = ", ".join(h.name for h in self._hosts) or "none"
            raise NetnsError(f"no lab host named {host_name!r} (hosts: {known})")
        return f"{PREFIX}{self._pid}-{host_name}"

    def exec_prefix(self, host_name: str) -> list[str]:
        """The words that run a command inside the host: ``ip netns exec NS``."""
        return ["ip", "netns", "exec", self.namespace(host_name)]

    def pids(self, host_name: str) -> list[int]:
        """The processes running inside the host now (``ip netns pids``)."""
        out = _run(["ip", "netns", "pids", self.namespace(host_name)])
        return [int(word) for word in out.split()]

    # -- create / destroy -----------------------------------------------------
    def create(self, hosts: Sequence[LabHost]) -> None:
        """Make the namespaces, the bridge, the veth pairs and the addresses.

        Raises:
            NetnsUnavailable: not root, or no ``ip``: in words, with what to do.
            NetnsError: a bad host, or a command failed; what was made is removed.
        """
        why = refusal()
        if why is not None:
            raise NetnsUnavailable(why)
        with self._lock:
            if self._made:
                raise NetnsError("this lab network exists already; destroy() it first")
            checked = _check_hosts(hosts, self._pid)
            with _live_lock:
                if any(network is not self for network in _live):
                    raise NetnsError("this run has a lab network already; only one at a time")
                _live.add(self)
            self._hosts = tuple(checked)
            try:
                self._build(checked)
            except BaseException:
                with contextlib.suppress(NetnsError):
                    self.destroy()
                self._hosts = ()
                raise

    def _build(self, hosts: list[LabHost]) -> None:
        switch = self.switch_namespace
        names = [switch, *(self.namespace(h.name) for h in hosts)]
        for ns in names:
            if os.path.exists(os.path.join(NETNS_DIR, ns)):
                raise NetnsError(f"a namespace {ns} exists already; nothing of it was touched")
            _run(["ip", "netns", "add", ns], self.commands)
            self._made.append(ns)
        self._quiet_switch(switch)
        ip = self._ip
        ip(switch, "link", "add", BRIDGE, "type", "bridge")
        ip(switch, "link", "set", BRIDGE, "up")
        for index, host in enumerate(hosts):
            ns = self.namespace(host.name)
            port = f"o{self._pid}s{index}"
            ip(switch, "link", "add", port, "type", "veth", "peer", "name", HOST_IFACE, "netns", ns)
            ip(switch, "link", "set", port, "master", BRIDGE, "up")
            ip(ns, "link", "set", "lo", "up")
            for address in host.addresses:
                # nodad: an IPv6 address is usable at once, not "tentative" for a second.
                extra = ["nodad"] if ":" in address else []
                ip(ns, "addr", "add", address, "dev", HOST_IFACE, *extra)
            ip(ns, "link", "set", HOST_IFACE, "up")

    def _quiet_switch(self, switch: str) -> None:
        """No IPv6 in the switch, so its bridge and ports get no link-local address either.

        Written through /proc/sys in the namespace (no need for the sysctl program);
        the log says what a student would type.
        """
        for scope in ("all", "default"):
            key = f"net.ipv6.conf.{scope}.disable_ipv6"
            self.commands.append(
                shlex.join(["ip", "netns", "exec", switch, "sysctl", "-w", f"{key}=1"])
            )
            path = "/proc/sys/" + key.replace(".", "/")
            try:
                in_namespace(switch, functools.partial(_write, path, "1"))
            except FileNotFoundError:
                return  # a kernel without IPv6: nothing to turn off
            except OSError as exc:
                raise NetnsError(f"could not turn off IPv6 in {switch}: {exc.strerror}") from exc

    def _ip(self, ns: str, *args: str) -> None:
        if ns not in self._made:  # destroy() ran meanwhile (a signal handler)
            raise NetnsError("the lab network was removed while it was being made")
        _run(["ip", "-n", ns, *args], self.commands)

    def destroy(self) -> None:
        """Remove every namespace made (their links go with them). Idempotent, thread-safe.

        A process still running in a host keeps that namespace alive (unnamed,
        with nothing but ``lo``) until it ends: stop the hosts' processes first.
        Only the process that created the network removes it (not a forked child).
        """
        if os.getpid() != self._pid:
            return
        with self._lock:
            failed: list[str] = []
            while self._made:
                ns = self._made.pop()
                try:
                    _run(["ip", "netns", "del", ns], self.commands)
                except NetnsError as exc:
                    if os.path.exists(os.path.join(NETNS_DIR, ns)):
                        failed.append(str(exc))
            with _live_lock:
                _live.discard(self)
        if failed:
            raise NetnsError("; ".join(failed))

    def __enter__(self) -> LabNetwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


# --------------------------------------------------------------------------- other runs


def open_lab(hosts: Sequence[LabHost], say: Callable[[str], None]) -> LabNetwork | None:
    """The lab network of a scenario's or a lesson's ``[[host]]`` tables, made; None when
    there are none. What a killed run left is removed first, and said (``say``), as is
    the network once it is up. For ``lab up``, ``lesson run`` and the dashboard.

    Raises:
        NetnsError: the network cannot be made here (not root, say), in words.
    """
    if not hosts:
        return None
    for note in sweep_stale():
        say(note)
    why = refusal()
    if why is not None:
        raise NetnsError(why)
    network = LabNetwork()
    network.create(hosts)
    made = "; ".join(f"{h.name} {', '.join(h.addresses)}" for h in network.hosts)
    say(f"lab hosts up ({made}): see one with `observatory snapshot --host NAME`")
    return network


def lab_source(network: LabNetwork | None) -> SocketSource:
    """This machine's sockets; with a lab network each host's too (sock_diag opened inside
    its namespace, each socket marked with its host)."""
    from app.core.sockets import DiagSource, LabSource, default_source

    own = default_source()
    if network is None:
        return own
    hosts = [
        in_namespace(network.namespace(h.name), functools.partial(DiagSource, host=h.name))
        for h in network.hosts
    ]
    return LabSource(own, hosts)


def lab_namespaces() -> dict[str, list[tuple[str, str]]]:
    """Every live run's lab hosts, by the run's prefix (``obs1234-``): (host, namespace)
    pairs in name order, the switch left out. Any user may list them (no root)."""
    live: dict[str, list[tuple[str, str]]] = {}
    for ns in _namespaces():
        match = _OURS.match(ns)
        if match and match.group(2) != SWITCH and _pid_alive(int(match.group(1))):
            live.setdefault(f"{PREFIX}{match.group(1)}-", []).append((match.group(2), ns))
    return live


def find_namespaces(host_name: str) -> list[str]:
    """The namespaces of host ``host_name`` in every live run (another terminal's, say).

    For ``observatory snapshot --host NAME``: usually one; none when no lab runs.
    """
    return [ns for lab in lab_namespaces().values() for host, ns in lab if host == host_name]


def _stale_groups(own_live: Iterable[str]) -> dict[int, list[str]]:
    """Our namespaces whose run is gone, by pid (this pid's too, unless a live network's)."""
    keep = set(own_live)
    groups: dict[int, list[str]] = {}
    for ns in _namespaces():
        match = _OURS.match(ns)
        if match is None or ns in keep:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or not _pid_alive(pid):
            groups.setdefault(pid, []).append(ns)
    return groups


def sweep_stale() -> list[str]:
    """Remove the lab namespaces of runs that ended without cleaning up (SIGKILL).

    Touches only ``obs<PID>-*`` namespaces whose PID is not alive (and this
    process's own that no live :class:`LabNetwork` of it holds: an earlier
    run that had the same pid). One sentence per run, saying what was removed
    or, without root, what to type.
    """
    with _live_lock:
        own = [ns for network in _live for ns in network._made]
    out: list[str] = []
    for pid, names in sorted(_stale_groups(own).items()):
        names.sort(key=lambda ns: (not ns.endswith(f"-{SWITCH}"), ns))
        listed = ", ".join(names)
        if refusal() is not None:
            out.append(
                f"A run that ended without cleaning up (pid {pid}) left the lab namespaces"
                f" {listed}; only root can remove them: sudo ip netns del NAME, for each."
            )
            continue
        failed: list[str] = []
        for ns in names:
            try:
                _run(["ip", "netns", "del", ns])
            except NetnsError as exc:
                failed.append(str(exc))
        if failed:
            out.append(
                f"Could not remove all of the lab network of pid {pid}: {'; '.join(failed)}."
            )
        else:
            out.append(
                "Removed the lab network of a run that ended without cleaning up"
                f" (pid {pid}): namespaces {listed}."
            )
    return out


# --------------------------------------------------------------------------- inside


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            raise NetnsError("entering a lab host's namespace needs root (setns: not permitted)")
        raise NetnsError(f"could not enter the namespace: {os.strerror(code)}")


def _open_namespace(ns_name: str) -> int:
    if "/" in ns_name or ns_name in ("", ".", ".."):
        raise NetnsError(f"{ns_name!r} is not a namespace name")
    try:
        return os.open(os.path.join(NETNS_DIR, ns_name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"there is no network namespace {ns_name}") from None
    except PermissionError:
        raise NetnsError(f"entering a lab host's namespace ({ns_name}) needs root") from None
    except OSError as exc:
        raise NetnsError(f"cannot open the network namespace {ns_name}: {exc.strerror}") from None


def in_namespace(ns_name: str, fn: Callable[[], T]) -> T:
    """``fn()`` run with the network namespace switched to ``ns_name``; its result.

    It runs in a short-lived thread that enters the namespace (``setns``, which
    changes only the calling thread) and then ends, so the caller's threads are
    untouched; a socket ``fn`` creates stays in that namespace, usable from
    any thread. ``fn``'s exception is raised here.

    Raises:
        NetnsError: no such namespace, or it cannot be entered (not root).
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = _open_namespace(ns_name)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            outcome.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns {ns_name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def interfaces_in(ns_name: str) -> list[Interface]:
    """The namespace's interfaces and addresses (``ip -j -n NS addr``), loopback first."""
    text = _run(["ip", "-j", "-n", ns_name, "addr"])
    try:
        links = json.loads(text or "[]")
    except ValueError as exc:
        raise NetnsError(f"`ip -j -n {ns_name} addr` gave no JSON: {exc}") from exc
    out = [_interface(link) for link in links if isinstance(link, dict)]
    out.sort(key=lambda i: (not i.name.startswith("lo"), i.name))
    return out


def _interface(link: dict[str, object]) -> Interface:
    found: list[Address] = []
    infos = link.get("addr_info")
    for info in infos if isinstance(infos, list) else []:
        family = {"inet": 4, "inet6": 6}.get(str(info.get("family")))
        local = info.get("local")
        if family is None or not isinstance(local, str):
            continue
        prefix = info.get("prefixlen")
        found.append(Address(family, local, prefix if isinstance(prefix, int) else None))
    flags = link.get("flags")
    mtu = link.get("mtu")
    mac = link.get("address")
    return Interface(
        name=str(link.get("ifname", "?")),
        up=isinstance(flags, list) and "UP" in flags,
        mtu=mtu if isinstance(mtu, int) else None,
        mac=mac if isinstance(mac, str) else None,
        addresses=tuple(found),
    )
