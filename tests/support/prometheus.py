"""A Prometheus of a test's own: the machine's `prometheus` binary on a loopback port, scraping
the targets the test names every second, with the repository's alert rules made quick."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.machine import ROOT
from tests.support.processes import free_port
from tests.support.waiting import wait_for

PROMETHEUS = shutil.which("prometheus")
ALERTS = ROOT / "monitoring" / "alerts.yml"


def quick_rules(folder: Path, hold: str = "2s") -> Path:
    """monitoring/alerts.yml with every `for:` shortened to `hold`: the same expressions, so a
    test sees the shipped rules fire in seconds rather than minutes."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
    path = folder / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


class Prometheus:
    """Prometheus' HTTP API, as an operator's dashboards and alert views read it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's series: (labels, value) each."""
        result = self.api("query", query=promql)["result"]
        return [(series["metric"], float(series["value"][1])) for series in result]

    def firing(self) -> set[str]:
        """The names of the alerts firing now."""
        return {
            a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"
        }


@contextmanager
def prometheus_server(
    folder: Path, targets: list[str], token: str | None = None
) -> Iterator[Prometheus]:
    """Run Prometheus scraping `targets` (host:port) every second until the block ends."""
    assert PROMETHEUS is not None, "no prometheus binary"
    folder.mkdir(parents=True, exist_ok=True)
    scrape: dict[str, Any] = {
        "job_name": "trainyard",
        "static_configs": [{"targets": targets}],
    }
    if token:
        (folder / "token").write_text(token)
        scrape["authorization"] = {"credentials_file": str(folder / "token")}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(quick_rules(folder))],
        "scrape_configs": [scrape],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        assert process.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
            return response.status == 200

    try:
        wait_for(ready, 30, what="prometheus to be ready", ignoring=(OSError,))
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
