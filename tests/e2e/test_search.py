"""A search on real workers: trials pruned on validation data, freed slots refilled, the best
chosen on validation data and tested once; and a search that loses a trial's worker mid-search
still accounts for every trial."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.lease import EpochRecord
from shared.domain.search import SearchSpec
from shared.domain.status import FINISHED_STATUSES, RunStatus
from shared.store.engine import Store
from shared.store.lease import claim
from shared.store.models import Epoch, Run
from shared.store.search import create_search, finish_trial, report_epoch
from tests.e2e.test_faults import broker, faulty, faulty_store  # noqa: F401 (fixtures)
from tests.support.app import client_for
from tests.support.browser import assert_console_clean, new_page, screenshot
from tests.support.processes import cli_env, run_trainyard, worker_process
from tests.support.waiting import wait_for

SPACE = {
    # Wide enough that some trials are plainly bad after an epoch: those get pruned.
    "learning_rate": {"low": 0.00001, "high": 0.5, "log": True},
    "optimizer": {"choices": ["adam", "sgd"]},
}


def submit_search(client: FlaskClient, params: dict[str, Any], **spec: Any) -> int:
    body = {"name": "e2e search", "params": params, "search": {"space": SPACE, **spec}}
    answer = client.post("/api/studies", json=body)
    assert answer.status_code == 202, answer.get_json()
    return int(answer.get_json()["id"])


def until_done(client: FlaskClient, study_id: int, timeout: float = 300) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        detail = client.get(f"/api/studies/{study_id}").get_json()
        return detail if detail["search"]["state"] == "done" else None

    return wait_for(done, timeout, what=f"search {study_id} to finish")


def trial_rows(store: Store, study_id: int) -> list[tuple[Run, list[Epoch]]]:
    with store.session_scope() as session:
        runs = list(session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id)))
        out = []
        for run in runs:
            epochs = list(
                session.scalars(select(Epoch).where(Epoch.run_id == run.id).order_by(Epoch.epoch))
            )
            out.append((run, epochs))
        session.expunge_all()
        return out


def assert_search_is_sound(detail: dict[str, Any], rows: list[tuple[Run, list[Epoch]]]) -> None:
    """Every trial ended; pruned ones trained nothing after the decision; the best is the
    complete trial with the best final validation accuracy, and only it read the test set."""
    assert all(run.status in FINISHED_STATUSES for run, _ in rows)
    finals = {}
    for run, series in rows:
        assert [e.epoch for e in series] == list(range(1, run.epochs_done + 1))
        if run.status == RunStatus.PRUNED:
            # The decision was taken with the last epoch's write: nothing was recorded after.
            assert run.epochs_done < run.epochs and run.finished_at is not None
            assert all(e.recorded_at <= run.finished_at for e in series)
        if run.status == RunStatus.SUCCEEDED:
            assert run.epochs_done == run.epochs and series[-1].val_accuracy is not None
            finals[run.id] = series[-1].val_accuracy
    best = detail["search"]["best"]
    assert best["run_id"] == max(finals, key=lambda i: (finals[i], -i))
    assert best["value"] == finals[best["run_id"]] and best["test_accuracy"] is not None
    tested = [run.id for run, _ in rows if run.test_accuracy is not None]
    assert tested == [best["run_id"]]


def test_a_search_from_the_cli_on_a_real_worker_prunes_refills_and_tests_the_best_once(
    worker: Settings, live_server: str, store: Store
) -> None:
    done = run_trainyard(
        "study", "search", "-p", "epochs=3", "-p", "validation_split=0.2",
        "-p", "train_samples=1000", "-p", "hidden_units=32",
        "--range", "learning_rate=0.00001,0.5,log", "--choice", "optimizer=adam,sgd",
        "--trials", "6", "--parallel", "2", "--seed", "5", "--wait", "--json",
        env=cli_env(worker, live_server), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    detail = json.loads(done.stdout)
    study_id = detail["id"]
    rows = trial_rows(store, study_id)
    assert len(rows) == 6 and detail["search"]["trials"].get("pruned", 0) >= 1
    assert_search_is_sound(detail, rows)
    assert detail["search"]["epochs_trained"] == sum(run.epochs_done for run, _ in rows) < 18
    assert detail["status"] == "finished"


def test_a_search_that_loses_a_trials_worker_still_accounts_for_every_trial(
    faulty: Settings,  # noqa: F811
    faulty_store: Store,  # noqa: F811
) -> None:
    client = client_for(faulty)
    params = {"epochs": 3, "validation_split": 0.2, "train_samples": 20000, "hidden_units": 64}
    with worker_process(faulty, name="fragile"):
        study_id = submit_search(client, params, trials=4, parallel=2, seed=2, pruner="none")

        def held_after_an_epoch() -> Run | None:
            for run, _ in trial_rows(faulty_store, study_id):
                if run.status == RunStatus.RUNNING and run.epochs_done >= 1 and run.worker_pid:
                    return run
            return None

        victim = wait_for(held_after_an_epoch, 120, what="a trial with an epoch done")
        assert victim.worker_pid
        os.kill(victim.worker_pid, signal.SIGKILL)
        detail = until_done(client, study_id)
    rows = trial_rows(faulty_store, study_id)
    assert len(rows) == 4 and {run.status for run, _ in rows} == {RunStatus.SUCCEEDED}
    killed, series = next((run, s) for run, s in rows if run.id == victim.id)
    # Resumed by a new attempt, the earlier attempt's reports kept.
    assert killed.attempt == 2 and "pool process" in killed.lost_attempts[0]["reason"]
    assert series[0].attempt == 1
    assert_search_is_sound(detail, rows)


@pytest.mark.browser
def test_a_search_page_in_the_browser(
    settings: Settings, live_server: str, session: Session, browser: Browser
) -> None:
    """A search with trials complete, pruned and running, its reports written through the store
    as workers write them (no training: the page is what is tested)."""
    spec = SearchSpec.model_validate(
        {"space": SPACE | {"dropout": {"low": 0.0, "high": 0.5}}, "trials": 8, "parallel": 8}
    )
    base = {"epochs": 4, "validation_split": 0.2, "train_samples": 1000}
    study, runs = create_search(session, "page", base, spec, 1, "search-page-nobody-reads")
    session.commit()
    curves = [(0.90, 0.93, 0.95, 0.96), (0.92, 0.94, 0.955, 0.965), (0.5,), (0.91, 0.93),
              (0.88, 0.92, 0.94, 0.95), (0.7,), (0.93, 0.95, 0.96, 0.97), (0.6,)]  # fmt: skip
    for run, values in zip(runs, curves, strict=True):
        lease = claim(session, run.id, "page@test", 1, 60)
        assert lease is not None
        pruned = False
        for epoch, value in enumerate(values, start=1):
            record = EpochRecord(epoch, 0.5, 0.9, 1.0, val_loss=1 - value, val_accuracy=value)
            pruned = report_epoch(session, lease, record, None, 4).pruned
            if pruned:
                break
        if len(values) == 4 and not pruned:
            finish_trial(session, lease, b"keras")
        session.commit()
    page = new_page(browser)
    page.goto(f"{live_server}/studies/{study.id}")
    for chart in ("search-best-curve", "search-trial-curves", "search-parallel"):
        assert page.locator(f"#{chart}").is_visible()
    assert page.locator("tr.trial-pruned").count() >= 1
    screenshot(page, "search.png")
    assert_console_clean()
