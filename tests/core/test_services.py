"""Port names from /etc/services and nmap's list, as ss and nmap print them."""

from __future__ import annotations

from pathlib import Path

from app.core import services


def test_both_formats_first_name_wins_comments_and_unknown_skipped(tmp_path: Path) -> None:
    etc = tmp_path / "services"
    etc.write_text(
        "# Network services, Internet style\n"
        "tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer\n"
        "x11\t\t6000/tcp\tx11-0\t\t\t# X Window System\n"
        "x11-again\t6000/tcp\n"
        "domain\t\t53/udp\n"
        "   \n"
        "#commented\t7/tcp\n"
    )
    nmap = tmp_path / "nmap-services"
    nmap.write_text(
        "# Fields in this file are: Service name, portnum/protocol, open-frequency, comments\n"
        "unknown\t1/tcp\t0.001\n"
        "fmsas\t16000/tcp\t0.000076\t# Fujitsu\n"
        "unknown\t45321/tcp\t0.0001\n"
    )
    assert services._parse(etc, nmap_format=False) == {
        (1, "tcp"): "tcpmux",
        (6000, "tcp"): "x11",
        (53, "udp"): "domain",
    }
    assert services._parse(nmap, nmap_format=True) == {(16000, "tcp"): "fmsas"}
    assert services._parse(tmp_path / "missing", nmap_format=False) == {}


def test_the_lecture_ports() -> None:
    assert services.service_name(6000) == "x11"
    assert services.service_name(45321) is None
    if services.nmap_services_path() is not None:
        assert services.service_name(16000) == "fmsas"
