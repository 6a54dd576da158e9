"""The agent's ``/metrics``: this machine's sockets as Prometheus gauges, with prometheus_client.

A custom collector reads the current observation (the shared, at most 0.2 s old
snapshot of :class:`app.core.agent.Observer`) at each scrape, into a
:class:`~prometheus_client.CollectorRegistry` of its own (not the library's
global one, which holds whatever else the process registered). No series is per
connection, and none is per port: a machine's label values are the TCP states
and protocols alone (``observatory_sockets`` has every TCP state of ``tcp`` and
``tcp6``, zero or not, so a series does not vanish when its count drops to
zero, and ``state="NONE"`` for ``udp``/``udp6``, as ``snapshot --json`` says
it). The agent process's own CPU and memory come as the library's usual
``process_*`` series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.core.model import TCP_STATES, UDP_STATE, Snapshot

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "SocketCollector", "registry_for", "render"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# name -> help, in the order they are exposed.
METRIC_NAMES = {
    "observatory_sockets": "Sockets of this machine by TCP state and protocol (UDP: state NONE).",
    "observatory_listeners": "TCP sockets in LISTEN.",
    "observatory_backlog_waiting": (
        "Connections waiting to be accepted: the accept queues of every listener, summed."
    ),
    "observatory_retransmissions": (
        "Segments retransmitted, summed over the TCP connections open now (tcp_info"
        " total_retrans over each one's life; a gauge: it drops when a connection closes)."
    ),
    "observatory_lab_processes": "Lab processes that a dashboard or `lab up` started here.",
    "observatory_poll_seconds": "How long reading the socket table took, at the last poll.",
}


def _socket_counts(snap: Snapshot) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for proto in ("tcp", "tcp6"):
        for state in TCP_STATES:
            counts[(state, proto)] = 0
    for proto in ("udp", "udp6"):
        counts[(UDP_STATE, proto)] = 0
    for s in snap.sockets:
        key = (s.state, s.proto)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRIC_NAMES[name], value=value)


class SocketCollector(Collector):
    """The gauges of one observation, taken anew at every scrape.

    Args:
        observe: returns the current snapshot and the number of lab processes.
    """

    def __init__(self, observe: Callable[[], tuple[Snapshot, int]]) -> None:
        self._observe = observe

    def collect(self) -> Iterable[Metric]:
        snap, lab_processes = self._observe()
        by_state = GaugeMetricFamily(
            "observatory_sockets", METRIC_NAMES["observatory_sockets"], labels=("state", "proto")
        )
        for (state, proto), count in sorted(_socket_counts(snap).items()):
            by_state.add_metric((state, proto), count)
        listeners = [s for s in snap.sockets if s.is_tcp and s.state == "LISTEN"]
        retrans = sum(s.retrans or 0 for s in snap.sockets if s.is_tcp and s.state != "LISTEN")
        return [
            by_state,
            _gauge("observatory_listeners", len(listeners)),
            # A listener's recv_q is its accept queue (connections waiting to be accepted).
            _gauge("observatory_backlog_waiting", sum(s.recv_q for s in listeners)),
            _gauge("observatory_retransmissions", retrans),
            _gauge("observatory_lab_processes", lab_processes),
            _gauge("observatory_poll_seconds", snap.duration),
        ]

    def describe(self) -> Sequence[Metric]:
        # The names without a poll: registering the collector does not read the sockets.
        return [GaugeMetricFamily(name, text) for name, text in METRIC_NAMES.items()]


def registry_for(observe: Callable[[], tuple[Snapshot, int]]) -> CollectorRegistry:
    """A registry of its own with the socket gauges and this process's ``process_*``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SocketCollector(observe))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (``CONTENT_TYPE``) of every metric in ``registry``."""
    return generate_latest(registry)
