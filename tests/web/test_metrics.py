"""GET /metrics: the cluster's figures from the store, the totals its writes keep, the web's own
requests, and who may read it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.metrics import RUNS_SUBMITTED
from shared.domain.status import RunStatus
from shared.store.metrics import SHARDS, count, totals
from shared.store.models import MetricTotal, Run, utcnow
from shared.store.runs import request_cancel
from shared.store.sweeps import take_back
from shared.store.workers import register_worker
from tests.builders import make_run
from tests.support.app import OPEN_APPS, client_for
from tests.support.metrics import Samples, parse, value


def scrape(client: FlaskClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def test_the_scrape_says_what_the_store_holds(session: Session, client: FlaskClient) -> None:
    for _ in range(2):
        make_run(session, status=RunStatus.SUCCEEDED, epochs_done=2, epochs=2)
    make_run(session, status=RunStatus.FAILED, epochs_done=1)
    make_run(session, status=RunStatus.QUEUED)
    cancelled = make_run(session, status=RunStatus.QUEUED)
    request_cancel(session, cancelled.id)
    held = make_run(session, status=RunStatus.RUNNING, worker="w1@a")
    session.execute(
        update(Run)
        .where(Run.id == held.id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    session.refresh(held)
    assert take_back(session, held, "its lease expired", max_attempts=3)
    register_worker(session, "w2@a", "a", pid=1, concurrency=2)
    session.commit()

    samples = scrape(client)
    assert value(samples, "trainyard_store_up") == 1
    assert value(samples, "trainyard_broker_up") == 1
    assert value(samples, "trainyard_runs_submitted_total") == 6
    finished = {
        s: value(samples, "trainyard_runs_finished_total", status=s)
        for s in ("succeeded", "failed", "cancelled")
    }
    assert finished == {"succeeded": 2, "failed": 1, "cancelled": 1}
    by_status = {s.value: value(samples, "trainyard_runs", status=s.value) for s in RunStatus}
    assert by_status == {
        "queued": 2, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 1, "pruned": 0
    }  # fmt: skip
    assert value(samples, "trainyard_queue_length") == 2
    assert value(samples, "trainyard_queue_oldest_age_seconds") > 0
    assert value(samples, "trainyard_workers_live") == 1
    assert value(samples, "trainyard_worker_slots") == 2
    assert value(samples, "trainyard_jobs_running") == 0
    takeovers = "trainyard_lease_takeovers_total"
    assert value(samples, takeovers, reason="lease_expired") == 1
    assert value(samples, takeovers, reason="pool_process_died") == 0
    # Five epochs of 1.5 s each (the builder's): all in the 2.5 s bucket, none in the 1 s one.
    epochs = "trainyard_epoch_duration_seconds"
    assert value(samples, f"{epochs}_count") == 5
    assert value(samples, f"{epochs}_sum") == pytest.approx(7.5)
    assert value(samples, f"{epochs}_bucket", le="1.0") == 0
    assert value(samples, f"{epochs}_bucket", le="2.5") == 5
    assert value(samples, f"{epochs}_bucket", le="+Inf") == 5
    # Three runs that started ended (two succeeded, one failed); each of the four claims waited.
    assert value(samples, "trainyard_run_duration_seconds_count") == 3
    assert value(samples, "trainyard_queue_wait_seconds_count") == 4


def test_deleted_runs_leave_the_runs_by_status(session: Session, client: FlaskClient) -> None:
    """Runs by status stays what the store holds when finished runs are deleted, alone or in
    bulk (issue 23), while runs_finished_total, a counter, never goes down."""
    doomed = [make_run(session, status=RunStatus.SUCCEEDED).id for _ in range(3)]
    make_run(session, status=RunStatus.FAILED)
    session.commit()
    assert client.delete(f"/api/runs/{doomed[0]}").status_code == 200
    bulk = client.post("/api/runs/bulk", json={"ids": doomed[1:], "action": "delete"})
    assert bulk.status_code == 200, bulk.get_json()
    samples = scrape(client)
    assert value(samples, "trainyard_runs", status="succeeded") == 0
    assert value(samples, "trainyard_runs", status="failed") == 1
    assert value(samples, "trainyard_runs_finished_total", status="succeeded") == 3
    assert value(samples, "trainyard_runs_deleted_total", status="succeeded") == 3


def test_a_rolled_back_unit_of_work_counts_nothing(session: Session) -> None:
    count(session, RUNS_SUBMITTED)
    session.rollback()
    session.commit()
    count(session, RUNS_SUBMITTED, by=2)
    session.close()
    assert totals(session) == {}
    count(session, RUNS_SUBMITTED, by=3)
    session.commit()
    assert totals(session) == {(RUNS_SUBMITTED, ""): 3}


def test_a_total_is_spread_over_shards_and_read_as_their_sum(session: Session) -> None:
    """Writers add to one of a total's shards each, so the cluster's writes do not queue on one
    row lock; the scrape sums them, exactly."""
    for _ in range(40):
        count(session, RUNS_SUBMITTED, by=0.5)
        session.commit()
    shards = session.scalars(
        select(MetricTotal.shard).where(MetricTotal.name == RUNS_SUBMITTED)
    ).all()
    assert 1 < len(shards) <= SHARDS
    assert totals(session) == {(RUNS_SUBMITTED, ""): 20.0}


def test_requests_are_counted_by_route_not_by_path(client: FlaskClient) -> None:
    for run_id in (123456, 123457):
        assert client.get(f"/api/runs/{run_id}").status_code == 404
    samples = scrape(client)
    route = "/api/runs/<int:run_id>"
    requests = "trainyard_http_requests_total"
    assert value(samples, requests, method="GET", route=route, status="404") == 2
    assert value(samples, "trainyard_http_request_duration_seconds_count", route=route) == 2
    assert not any("123456" in str(labels) for _, labels in samples)


@pytest.mark.parametrize(
    ("changes", "accepted", "refused"),
    [
        ({"metrics_token": "scrape-me"}, ["scrape-me", "the-key"], [None, "wrong"]),
        ({"private": True}, ["the-key"], [None, "scrape-me"]),
        ({"private": True, "metrics_token": "scrape-me"}, ["scrape-me", "the-key"], [None]),
        ({}, [None], []),
    ],
)
def test_who_may_scrape(
    settings: Settings,
    changes: dict[str, object],
    accepted: list[str | None],
    refused: list[str | None],
) -> None:
    client = client_for(replace(settings, api_token="the-key", **changes))
    for token in accepted:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert client.get("/metrics", headers=headers).status_code == 200, token
    for token in refused:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert client.get("/metrics", headers=headers).status_code == 401, token


def test_an_unreachable_store_is_a_series_not_an_error(settings: Settings) -> None:
    from web import create_app

    down = replace(settings, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = create_app(down, check_migrations=False)
    OPEN_APPS.append(app)
    samples = scrape(app.test_client())
    assert value(samples, "trainyard_store_up") == 0
    assert value(samples, "trainyard_broker_up") == 1
    assert not any(name.startswith("trainyard_runs") for name, _ in samples)


def test_a_process_starts_beside_a_sibling_whose_metrics_file_is_still_empty(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gunicorn starts its processes together: one may find the other's file created, not yet
    # written. Registering the shared counts must not read it: that failed the boot, and the
    # server with it.
    (tmp_path / "counter_99999.db").touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    client = client_for(settings)
    assert client.get("/api/runs?limit=1").status_code == 200
