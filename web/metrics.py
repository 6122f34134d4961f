"""`GET /metrics`: the cluster and this web app in Prometheus' text format.

What describes the cluster is read from the store at scrape time (`ClusterCollector`): the runs
in flight, the queue, live workers, and the totals the store's writes keep (finished runs among
them), each with a query whose cost follows the work in flight, never the history. So whichever gunicorn
process answers, the figures are the same. The web's own requests are counted per process; under
gunicorn (`PROMETHEUS_MULTIPROC_DIR` set by `trainyard web`) every process writes them to that
folder and each scrape adds them up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from shared.config import Settings
from shared.domain.errors import Unauthorized
from shared.domain.metrics import (
    HANDOVERS,
    HISTOGRAMS,
    INF,
    LEASE_TAKEOVERS,
    RUNS_DELETED,
    RUNS_FINISHED,
    RUNS_SUBMITTED,
    TAKEOVER_REASONS,
    HistogramSpec,
    bucket_label,
)
from shared.domain.status import FINISHED_STATUSES, RunStatus
from shared.store.engine import Store
from shared.store.metrics import ClusterState, cluster_state, totals
from web.health import check_broker
from web.security import bearer_token, token_matches

logger = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)
PREFIX = "trainyard_"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ClusterCollector(Collector):
    """The cluster as the store and the broker see it now, read at each scrape."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        broker_up, _ = check_broker(self.settings)
        yield _gauge("broker_up", "Whether the Celery broker took a connection.", float(broker_up))
        try:
            with self.store.session_scope() as session:
                state = cluster_state(session, self.settings.heartbeat_timeout)
                kept = totals(session)
        except Exception as exc:
            logger.warning("metrics: the store is unreachable: %s", exc)
            yield _gauge("store_up", "Whether the results store answered.", 0.0)
            return
        yield _gauge("store_up", "Whether the results store answered.", 1.0)
        yield from _state_metrics(state, kept)
        yield from _kept_metrics(kept)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _state_metrics(state: ClusterState, kept: dict[tuple[str, str], float]) -> Iterator[Metric]:
    runs = GaugeMetricFamily(PREFIX + "runs", "Runs in the store by status.", labels=["status"])
    runs.add_metric([RunStatus.QUEUED.value], state.queued)
    runs.add_metric([RunStatus.RUNNING.value], state.running)
    # A finished run stays finished until deleted: their number is the finished counter less the
    # deleted one, not a scan of history.
    for status in sorted(FINISHED_STATUSES):
        finished = kept.get((RUNS_FINISHED, status.value), 0.0)
        runs.add_metric([status.value], finished - kept.get((RUNS_DELETED, status.value), 0.0))
    yield runs
    yield _gauge("queue_length", "Runs waiting for a worker.", state.queued)
    yield _gauge(
        "queue_oldest_age_seconds",
        "Seconds since the oldest queued run was submitted (0 with none queued).",
        state.oldest_queued_age,
    )
    yield _gauge("workers_live", "Worker nodes whose heartbeat is recent.", state.live_workers)
    yield _gauge("worker_slots", "Jobs the live workers can run at once.", state.worker_slots)
    yield _gauge("jobs_running", "Runs a worker holds now.", state.running)


def _counter(
    kept: dict[tuple[str, str], float],
    name: str,
    documentation: str,
    label: str | None = None,
    values: tuple[str, ...] = (),
) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, documentation, labels=[label] if label else None)
    if label is None:
        family.add_metric([], kept.get((name, ""), 0.0))
    for value in values:
        family.add_metric([value], kept.get((name, value), 0.0))
    return family


def _histogram(kept: dict[tuple[str, str], float], spec: HistogramSpec, doc: str) -> Metric:
    buckets, running = [], 0.0
    for bound in (*spec.bounds, INF):
        running += kept.get((spec.name, bucket_label(bound)), 0.0)
        buckets.append((bucket_label(bound), running))
    return HistogramMetricFamily(
        PREFIX + spec.name, doc, buckets=buckets, sum_value=kept.get((spec.sum_name, ""), 0.0)
    )


HISTOGRAM_DOCS = {
    "epoch_duration_seconds": "Seconds each recorded epoch took to train.",
    "run_duration_seconds": "Seconds from a run's first claim to its end, for runs that started.",
    "queue_wait_seconds": "Seconds a run waited in the queue before each claim.",
}


def _kept_metrics(kept: dict[tuple[str, str], float]) -> Iterator[Metric]:
    yield _counter(kept, RUNS_SUBMITTED, "Runs submitted.")
    yield _counter(
        kept,
        RUNS_FINISHED,
        "Runs that ended, by status.",
        "status",
        tuple(sorted(status.value for status in FINISHED_STATUSES)),
    )
    yield _counter(
        kept,
        LEASE_TAKEOVERS,
        "Runs a sweep took back from a holder that stopped answering (each a lost attempt).",
        "reason",
        TAKEOVER_REASONS,
    )
    yield _counter(
        kept,
        RUNS_DELETED,
        "Finished runs deleted (alone, in bulk, with their study or by purge), by status.",
        "status",
        tuple(sorted(status.value for status in FINISHED_STATUSES)),
    )
    yield _counter(kept, HANDOVERS, "Runs a stopping worker put back in the queue.")
    for spec in HISTOGRAMS:
        yield _histogram(kept, spec, HISTOGRAM_DOCS[spec.name])


class RequestMetrics:
    """This web process's requests by route and status, and their latencies."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            PREFIX + "http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            PREFIX + "http_request_duration_seconds",
            "Seconds to answer an HTTP request, by route.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)


def multiprocess_dir() -> str | None:
    """The folder gunicorn's processes share their request counts in, when there is one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def register_metrics(app: Flask, store: Store, settings: Settings) -> None:
    """Serve /metrics and count every request the app answers."""
    shared_dir = multiprocess_dir()
    # No auto_describe: it collects every collector once to learn its names when it registers.
    # That read the store at each process's start, and the multiprocess files of sibling
    # processes just starting: an empty one (created, not yet sized) failed the boot of a
    # gunicorn worker, and gunicorn then stops the whole server.
    registry = CollectorRegistry()
    if shared_dir:
        # The counts live in files that every process writes; each scrape sums them.
        MultiProcessCollector(registry, path=shared_dir)
        requests = RequestMetrics(registry=None)
    else:
        requests = RequestMetrics(registry=registry)
    registry.register(ClusterCollector(store, settings))
    app.extensions["trainyard.metrics"] = registry
    app.before_request(_start_timer)
    app.after_request(lambda response: _count(requests, response))
    app.register_blueprint(bp)


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _count(requests: RequestMetrics, response: Response) -> Response:
    started = g.pop("request_started", None)
    if started is not None:
        # The route's rule, never the path: one series per route, whatever the ids asked for.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        requests.observe(method, route, response.status_code, time.perf_counter() - started)
    return response


def _allowed(settings: Settings) -> bool:
    """Whether this scrape may read: the metrics token or the API token when either is needed."""
    needed = [token for token in (settings.metrics_token, settings.api_token) if token]
    if not settings.metrics_token and not (settings.private and settings.api_token):
        return True
    given = bearer_token(request)
    return given is not None and any(token_matches(given, token) for token in needed)


@bp.get("/metrics")
def metrics() -> Response:
    """The cluster's and this app's metrics in Prometheus' text format."""
    settings: Settings = current_app.config["TRAINYARD"]
    if not _allowed(settings):
        raise Unauthorized(
            "/metrics needs a token: Authorization: Bearer <TRAINYARD_METRICS_TOKEN or API token>",
            {"Authorization": "missing or wrong bearer token"},
        )
    registry: CollectorRegistry = current_app.extensions["trainyard.metrics"]
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
