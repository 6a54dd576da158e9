"""Every validator and parser of app.core and app.labs, given what a classroom types.

Each property: the input is either accepted (and the result is what the parser promises)
or refused with the module's own error, whose words pass :func:`assert_words`; never
another exception (int()'s 4,300-digit ValueError, a RecursionError, a UnicodeError...).
"""

from __future__ import annotations

from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from app.core import classroom, endian, targets
from app.core.agent import _ports
from app.core.agent_auth import AgentRefused, bearer_refusal, check_host, host_header_refusal
from app.core.model import Snapshot
from app.core.scan import ScanError, ScanRequest
from app.core.sockaddr import (
    SockaddrError,
    build_sockaddr,
    parse_address,
    parse_endpoint,
    parse_port,
)
from app.labs import PROGRAMS, LabUsageError, validate, whole_number
from app.labs._args import check_ip, check_port, int_checker, seconds_checker
from tests.property.strategies import (
    FAST,
    SLOW,
    TRICKY,
    assert_words,
    refused_or,
    tally,
    text,
    words,
)

EMPTY = Snapshot(taken_at=0.0, sockets=())


# ------------------------------------------------------------------ scan targets and ports


@FAST
@given(text)
def test_parse_ports(typed: str) -> None:
    canonical = refused_or(
        "targets.parse_ports", lambda: targets.parse_ports(typed), targets.PortsError
    )
    if canonical is not None:
        assert targets.parse_ports(canonical) == canonical  # canonical is a fixed point
        ports = targets.expand_ports(canonical)
        assert ports and all(1 <= p <= 65535 for p in ports)
        assert all(c in "0123456789,-" for c in canonical)


@FAST
@given(text)
def test_parse_target(typed: str) -> None:
    target = refused_or(
        "targets.parse_target", lambda: targets.parse_target(typed), targets.TargetError
    )
    if target is not None:
        # What nmap is given: never an option, never two words.
        assert not target.text.startswith("-")
        assert not any(c.isspace() for c in target.text)
        assert target.text.isascii() and target.text.isprintable()
        assert 1 <= target.size <= targets.MAX_NETWORK_ADDRESSES


@FAST
@given(text, st.one_of(st.none(), text), st.one_of(st.sampled_from(["connect", "udp"]), text))
def test_scan_request(target: str, ports: str | None, kind: str) -> None:
    request = refused_or(
        "scan.ScanRequest.create",
        lambda: ScanRequest.create(target, ports, kind, snapshot=EMPTY),
        ScanError,
    )
    if request is not None:
        from app.core.scan.request import build_command

        argv = build_command(request)
        assert argv[-2] == "--" and argv[-1] == request.target.text


# ------------------------------------------------------------------ sockaddr and endianness


@FAST
@given(text)
def test_sockaddr_port(typed: str) -> None:
    port = refused_or("sockaddr.parse_port", lambda: parse_port(typed), SockaddrError)
    if port is not None:
        assert 0 <= port <= 65535


@FAST
@given(text)
def test_sockaddr_address(typed: str) -> None:
    refused_or("sockaddr.parse_address", lambda: parse_address(typed), SockaddrError)


@FAST
@given(text)
def test_sockaddr_endpoint(typed: str) -> None:
    found = refused_or("sockaddr.parse_endpoint", lambda: parse_endpoint(typed), SockaddrError)
    if found is not None:
        address, port = found
        layout = build_sockaddr(address, port)  # what parse_endpoint took, builds
        assert len(layout.data) in (16, 28)


@FAST
@given(st.one_of(text, words))
def test_endian_bytes(typed: str | list[str]) -> None:
    data = refused_or("endian.parse_bytes", lambda: endian.parse_bytes(typed), endian.EndianError)
    if data is not None:
        assert 1 <= len(data) <= endian.MAX_BYTES
        endian.render_text(endian.read_words(data))


# ------------------------------------------------------------------ the lab programs' arguments


@FAST
@given(text)
def test_whole_number(typed: str) -> None:
    tally("labs.whole_number")
    value = whole_number(typed)  # never raises
    if value is not None:
        assert typed.strip().isascii() and typed.strip().isdigit()


@FAST
@given(text)
def test_lab_port_and_address(typed: str) -> None:
    port = refused_or("labs.check_port", lambda: check_port(typed), ValueError)
    if port is not None:
        assert 1 <= port <= 65535
    refused_or("labs.check_ip", lambda: check_ip(typed), ValueError)
    refused_or("labs.int_checker", lambda: int_checker("--count", 1, 100)(typed), ValueError)
    refused_or("labs.seconds_checker", lambda: seconds_checker("--hold", True)(typed), ValueError)


@SLOW
@given(st.sampled_from([*PROGRAMS, "tcp-servr", ""]), words)
def test_lab_program_arguments(program: str, args: list[str]) -> None:
    refused_or("labs.validate", lambda: validate(program, args), LabUsageError)


@FAST
@given(
    st.lists(st.sampled_from(TRICKY + ["6000", "--bind", "--handler", "echo", "-h"]), max_size=6)
)
def test_lab_program_arguments_of_tricky_words(args: list[str]) -> None:
    for program in PROGRAMS:
        refused_or("labs.validate (tricky words)", partial(validate, program, args), LabUsageError)


# ------------------------------------------------------------------ the class view and the agent


@FAST
@given(text)
def test_class_target(typed: str) -> None:
    target = refused_or(
        "classroom.parse_target", lambda: classroom.parse_target(typed), classroom.TargetError
    )
    if target is not None:
        assert 1 <= target.port <= 65535


@SLOW
@given(words)
def test_class_targets(typed: list[str]) -> None:
    refused_or(
        "classroom.parse_targets", lambda: classroom.parse_targets(typed), classroom.TargetError
    )


@FAST
@given(text)
def test_agent_query_ports(query: str) -> None:
    tally("agent._ports")
    found = _ports(query)  # a set, or the words of a 400
    if isinstance(found, str):
        assert_words(found)
    else:
        assert all(1 <= p <= 65535 for p in found)


@FAST
@given(
    st.lists(text, max_size=3),
    st.one_of(st.none(), st.sampled_from([b"tok", b"a" * 64])),
    st.one_of(st.none(), text),
)
def test_agent_headers(authorization: list[str], token: bytes | None, host: str | None) -> None:
    tally("agent_auth.bearer_refusal, host_header_refusal")
    for said in (bearer_refusal(authorization, token), host_header_refusal(host, token)):
        if said is not None:
            assert_words(said)


@FAST
@given(text)
def test_agent_listen_host(host: str) -> None:
    refused_or("agent_auth.check_host", lambda: check_host(host, None), AgentRefused)
