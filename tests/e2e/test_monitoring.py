"""The cluster as Prometheus sees it: two gunicorn servers (`trainyard web`, two processes each)
on one store, a real worker, and the machine's Prometheus scraping both with the repository's
alert rules (their `for:` shortened to seconds).

With runs queued and no worker, the no-live-worker alert fires; a worker starts, it clears, and
the runs train. Both servers, whichever of their processes answers, give the same cluster figures;
the counters and histograms say how many runs and epochs there were, read back from Prometheus'
HTTP API; the request counts add up across a server's processes; and every log line of the job is
a JSON object naming its run, attempt and worker.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from pathlib import Path

import pytest

from cli.client import Client
from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.migrate import upgrade
from tests.support.metrics import Samples, parse, value
from tests.support.processes import web_process, worker_process
from tests.support.prometheus import PROMETHEUS, prometheus_server
from tests.support.waiting import until_finished, wait_for

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="no prometheus binary (Debian: prometheus)"
)
TOKEN = "scrape-token"
TENSORFLOW_NATIVE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")
RUNS, EPOCHS = 2, 2
# What describes the cluster (not a web process): every server must give the same.
CLUSTER_SERIES = (
    "trainyard_runs",
    "trainyard_queue_length",
    "trainyard_workers_live",
    "trainyard_jobs_running",
    "trainyard_runs_submitted_total",
    "trainyard_runs_finished_total",
    "trainyard_lease_takeovers_total",
    "trainyard_epoch_duration_seconds",
    "trainyard_run_duration_seconds",
    "trainyard_queue_wait_seconds",
)


def scrape(url: str) -> Samples:
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return parse(response.read().decode())


def cluster_figures(samples: Samples) -> Samples:
    return {
        key: v
        for key, v in samples.items()
        if key[0].startswith(CLUSTER_SERIES) and "_created" not in key[0]
    }


def json_lines(log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_prometheus_sees_the_cluster_and_the_no_worker_alert_fires_then_clears(
    base_settings: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = base_settings.with_overrides(
        home=home,
        database_url=f"sqlite:///{home / 'trainyard.db'}",
        queue=f"trainyard-monitoring-{uuid.uuid4().hex[:8]}",
        metrics_token=TOKEN,
        log_format="json",
        tf_threads=1,
    )
    upgrade(settings.database_url)
    store = Store(settings.database_url)
    with (
        web_process(settings) as first,
        web_process(settings) as second,
        prometheus_server(
            tmp_path / "prometheus", [u.removeprefix("http://") for u in (first, second)], TOKEN
        ) as prometheus,
    ):
        client = Client(first)
        ids = [
            client.submit({"train_samples": 1000, "epochs": EPOCHS, "seed": seed})["id"]
            for seed in range(RUNS)
        ]
        wait_for(
            lambda: "TrainyardNoLiveWorker" in prometheus.firing(), 60, what="the alert to fire"
        )
        assert prometheus.query("max(trainyard_queue_length)")[0][1] == RUNS
        assert cluster_figures(scrape(first)) == cluster_figures(scrape(second))

        with worker_process(settings, name="watched") as worker:
            wait_for(
                lambda: "TrainyardNoLiveWorker" not in prometheus.firing(),
                60,
                what="the alert to clear",
            )
            runs = until_finished(store, *ids)
            assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * RUNS, [
                r.error for r in runs
            ]
            worker_log = worker.output()

        def scraped_by_prometheus() -> bool:
            series = prometheus.query('trainyard_runs_finished_total{status="succeeded"}')
            return len(series) == 2 and all(v == RUNS for _, v in series)

        wait_for(
            scraped_by_prometheus,
            30,
            what="Prometheus to scrape both finished runs from both servers",
        )
        assert (
            prometheus.query("max(trainyard_epoch_duration_seconds_count)")[0][1] == RUNS * EPOCHS
        )
        assert prometheus.query("max(trainyard_run_duration_seconds_count)")[0][1] == RUNS
        p95 = prometheus.query(
            "histogram_quantile(0.95, max(rate(trainyard_epoch_duration_seconds_bucket[5m])) by (le))"
        )
        assert p95 and p95[0][1] > 0

        figures = [cluster_figures(scrape(url)) for url in (first, second, first, second)]
        assert all(f == figures[0] for f in figures), "the servers disagree on the cluster"
        samples = scrape(first)
        assert value(samples, "trainyard_runs_submitted_total") == RUNS
        assert value(samples, "trainyard_runs_finished_total", status="succeeded") == RUNS
        assert value(samples, "trainyard_epoch_duration_seconds_count") == RUNS * EPOCHS
        assert value(samples, "trainyard_queue_wait_seconds_count") == RUNS
        # Both submits went to the first server, whichever of its two processes took each.
        posted = value(
            samples, "trainyard_http_requests_total", method="POST", route="/api/runs", status="202"
        )
        assert posted == RUNS
    store.close()

    # Every line is JSON but TensorFlow's native runtime's, which C++ writes to stderr itself.
    others = [
        line
        for line in worker_log.splitlines()
        if line.strip() and not line.startswith("{") and not TENSORFLOW_NATIVE.match(line)
    ]
    assert not others, "\n".join(others)
    job_lines = [line for line in json_lines(worker_log) if line.get("run_id") is not None]
    for run_id in ids:
        lines = [line for line in job_lines if line["run_id"] == run_id]
        assert any("epoch" in str(line["message"]) for line in lines), worker_log[-3000:]
        for line in lines:
            assert line["attempt"] == 1 and str(line["worker"]).startswith("watched@"), line
    web_logs = "".join(path.read_text() for path in home.glob("web-server-*.log"))
    access = [line for line in json_lines(web_logs) if line.get("logger") == "gunicorn.access"]
    assert any("/api/runs" in str(line["message"]) for line in access), web_logs[-3000:]
