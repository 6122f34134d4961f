"""The monitoring files: Prometheus accepts the config and the alert rules, the rules' unit tests
pass (`promtool test rules`), and every trainyard series a rule reads is one /metrics exposes."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from flask.testing import FlaskClient

from tests.support.machine import ROOT
from tests.support.metrics import parse

MONITORING = ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="no promtool (Debian: prometheus)")


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@needs_promtool
def test_prometheus_accepts_the_rules_and_the_config() -> None:
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("check", "config", "--syntax-only", "prometheus.yml")


@needs_promtool
def test_the_alerts_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "tests/alerts_test.yml")


def test_every_series_a_rule_reads_is_exposed(client: FlaskClient) -> None:
    read = set(re.findall(r"\btrainyard_[a-z_]+", (MONITORING / "alerts.yml").read_text()))
    assert read, "the rules read no trainyard series"
    exposed = {name for name, _ in parse(client.get("/metrics").get_data(as_text=True))}
    assert read <= exposed, f"rules read series /metrics lacks: {read - exposed}"
