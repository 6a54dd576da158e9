"""``observatory`` with no sub-command: the dashboard."""

from __future__ import annotations

import argparse

from app.cliutil import positive_seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--theme", default=None, help="colour theme (e.g. projector)")
    parser.add_argument(
        "--interval", type=positive_seconds, default=1.0, help="seconds between polls (> 0)"
    )
    parser.add_argument("--scenario", default=None, help="a scenario file to start at launch")


def run(args: argparse.Namespace) -> int:
    # Until the dashboard exists, show one snapshot.
    from app.commands import snapshot

    ns = argparse.Namespace(
        json=False, state="default", udp=False, family=None, numeric=False, port=None
    )
    return snapshot.run(ns)
