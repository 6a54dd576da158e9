"""A real Prometheus scrapes two agents on loopback with a bearer token (issue 14, item 3).

Debian's ``prometheus`` (``.ci/run`` installs it) runs with a config of our own
(two agents, on 127.0.0.2 and 127.0.0.3, scraped every second with the token;
one more job with a wrong token), its storage in a temporary folder and its web
port on 127.0.0.1; the test reads ``observatory_listeners`` back through its
HTTP query API, for both agents, and ``up`` 0 for the wrong token. It is
skipped without prometheus on PATH, and fails instead under CI (``CI`` set) or
with ``OBSERVATORY_REQUIRE_PROMETHEUS=1``. Prometheus and the agents are
stopped by their pids.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port
from tests.e2e.test_agent_cli import AgentProcess

TOKEN = "prometheus-scrapes-room-101"


def prometheus_path() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("OBSERVATORY_REQUIRE_PROMETHEUS") == "1" or os.environ.get("CI"):
            pytest.fail("prometheus is required under CI but is not on PATH (.ci/run installs it)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return path


def config(token: Path, wrong: Path, targets: list[str]) -> str:
    return json.dumps(  # JSON is YAML
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "observatory",
                    "authorization": {"type": "Bearer", "credentials_file": str(token)},
                    "static_configs": [{"targets": targets}],
                },
                {
                    "job_name": "wrong-token",
                    "authorization": {"type": "Bearer", "credentials_file": str(wrong)},
                    "static_configs": [{"targets": targets[:1]}],
                },
            ],
        }
    )


def query(web: str, expr: str) -> list[dict[str, Any]]:
    url = f"{web}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.load(resp)
    except OSError:
        return []  # not up yet
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def test_prometheus_scrapes_two_agents_and_answers_the_gauge(tmp_path: Path) -> None:
    binary = prometheus_path()
    token, wrong = tmp_path / "token", tmp_path / "wrong"
    token.write_text(TOKEN + "\n")
    wrong.write_text("not-the-token\n")
    for path in (token, wrong):
        path.chmod(0o600)
    hosts = {"127.0.0.2": free_port(addr="127.0.0.2"), "127.0.0.3": free_port(addr="127.0.0.3")}
    targets = [f"{h}:{p}" for h, p in hosts.items()]
    (tmp_path / "prometheus.yml").write_text(config(token, wrong, targets))
    web = f"http://127.0.0.1:{free_port()}"
    started = []
    prom = None
    try:
        for host, port in hosts.items():
            agent = AgentProcess("--host", host, "--port", str(port), "--token-file", str(token))
            started.append(agent)
            assert agent.line.startswith("observatory agent: listening on"), agent.line
        with open(tmp_path / "prometheus.log", "wb") as log:
            prom = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address={web.removeprefix('http://')}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 15
        listeners: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        while time.monotonic() < deadline and (len(listeners) < 2 or not refused):
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
            listeners = query(web, 'observatory_listeners{job="observatory"}')
            refused = query(web, 'up{job="wrong-token"} == 0')
        assert {r["metric"]["instance"] for r in listeners} == set(targets), listeners
        assert all(float(r["value"][1]) >= 2 for r in listeners)  # the agents see each other
        assert refused, "a wrong token was not refused"
        by_state = query(web, 'observatory_sockets{job="observatory",state="LISTEN",proto="tcp"}')
        assert len(by_state) == 2
    finally:
        if prom is not None:
            prom.send_signal(signal.SIGTERM)
            try:
                prom.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
        for agent in started:
            with contextlib.suppress(Exception):
                agent.stop()


def test_the_example_scrape_config_is_valid(tmp_path: Path) -> None:
    """deploy/prometheus.yml, its token path pointed at a file that exists, passes promtool."""
    prometheus_path()
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with Debian's prometheus package"
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    example = (REPO / "deploy" / "prometheus.yml").read_text()
    assert "credentials_file: /etc/prometheus/observatory.token" in example
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(example.replace("/etc/prometheus/observatory.token", str(token)))
    result = subprocess.run(
        [promtool, "check", "config", str(config_file)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, result
