"""nmap scans on demand, joined with what this machine knows about its own sockets.

nmap sees a port from outside: open, closed, filtered. The kernel knows, from
inside, which process listens there and on which address. Joined, a closed
port can say *why* it is closed ("a process listens on 127.0.0.1:6000 only;
you scanned 127.0.0.2") and an open one *who* answered.

Threading model (for a UI): build a :class:`ScanRequest` (validation happens
there, in the caller's thread), then either call :meth:`Scan.run` from a
worker thread or :meth:`Scan.start` to let the scan own a thread. Progress
arrives through ``on_progress`` in the scanning thread; :meth:`Scan.cancel`
may be called from any thread. However a scan ends (done, cancelled, timed
out, or an exception in a callback), nmap's whole process group is killed and
reaped before the scan returns: no nmap process is ever left behind.

nmap runs as ``nmap -oX - --stats-every 1s ...`` under ``subprocess.Popen``
with an argv list (no shell), stdin from /dev/null and its own session. Its
XML carries ``<taskprogress percent=...>`` lines while it works; those are
the progress reports. When nmap has ended, python-nmap reads its XML
(``PortScanner.analyse_nmap_xml_scan``; the few fields it drops are read by
hand, see :func:`parse_nmap_xml`). python-nmap never builds nor runs the
command: ``PortScannerAsync.stop()`` leaves nmap running, and ``PortScanner``
joins ``hosts`` and ``arguments`` into argv with ``shlex.split``, so a "host"
could add options.

From a lab host (a network namespace of a running lab, found with
:func:`find_origin`), nmap runs as ``ip netns exec NS nmap ...``, may target
only the lab's addresses, and each port is explained with the sockets of the
lab host that address is.

The package, one module a purpose: :mod:`~app.core.scan.types` (the scan
types, nmap on PATH), :mod:`~app.core.scan.request` (validation and the
argv), :mod:`~app.core.scan.origin` (the lab host a scan runs from),
:mod:`~app.core.scan.results` (what a scan found),
:mod:`~app.core.scan.nmap_xml` (nmap's XML, read through python-nmap),
:mod:`~app.core.scan.join` (the LISTEN table and the explanations),
:mod:`~app.core.scan.runner` (running nmap) and :mod:`~app.core.scan.history`
(kept results and their comparison). Everything a caller uses is
re-exported here.
"""

from __future__ import annotations

from app.core.scan.history import CompareRow, ScanHistory, compare
from app.core.scan.nmap_xml import NmapXmlError, parse_nmap_xml
from app.core.scan.origin import (
    LabOrigin,
    OriginError,
    find_origin,
    refuse_lab_address,
    running_hosts,
    running_labs,
)
from app.core.scan.request import (
    DEFAULT_TIMEOUT,
    LECTURE_PORTS,
    ScanRequest,
    build_command,
    default_ports,
)
from app.core.scan.results import (
    HostResult,
    ListenerInfo,
    NotShown,
    PortResult,
    ScanProgress,
    ScanResult,
)
from app.core.scan.runner import Scan, run_scan
from app.core.scan.types import (
    NMAP_MISSING,
    NmapNotFound,
    ScanStatus,
    ScanType,
    ScanTypeError,
    ScanTypeInfo,
    ScanTypeUnavailable,
    available_types,
    check_type,
    find_nmap,
    nmap_missing_reason,
)
from app.core.targets import (
    MAX_NETWORK_ADDRESSES,
    PortsError,
    ScanError,
    Target,
    TargetError,
    parse_ports,
    parse_target,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "LECTURE_PORTS",
    "MAX_NETWORK_ADDRESSES",
    "NMAP_MISSING",
    "CompareRow",
    "HostResult",
    "LabOrigin",
    "ListenerInfo",
    "NmapNotFound",
    "NmapXmlError",
    "NotShown",
    "OriginError",
    "PortResult",
    "PortsError",
    "Scan",
    "ScanError",
    "ScanHistory",
    "ScanProgress",
    "ScanRequest",
    "ScanResult",
    "ScanStatus",
    "ScanType",
    "ScanTypeError",
    "ScanTypeInfo",
    "ScanTypeUnavailable",
    "Target",
    "TargetError",
    "available_types",
    "build_command",
    "check_type",
    "compare",
    "default_ports",
    "find_nmap",
    "find_origin",
    "nmap_missing_reason",
    "parse_nmap_xml",
    "parse_ports",
    "parse_target",
    "refuse_lab_address",
    "run_scan",
    "running_hosts",
    "running_labs",
]
