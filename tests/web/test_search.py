"""Search studies through the API and the store, on the real database and broker (no worker: the
trials' epochs are written through the same store functions a worker's job calls)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.lease import EpochRecord
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.lease import claim
from shared.store.models import Run, Study
from shared.store.search import (
    Decision,
    claim_test,
    finish_trial,
    record_test,
    report_epoch,
    study_of,
    sweep_search,
)
from tests.builders import EVALUATION
from tests.support.machine import queued_messages

SPACE = {
    "learning_rate": {"low": 0.0001, "high": 0.1, "log": True},
    "hidden_units": {"low": 16, "high": 512, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "optimizer": {"choices": ["adam", "sgd", "rmsprop"]},
}
BASE = {"epochs": 9, "validation_split": 0.1, "train_samples": 1000}


def search(**changes: Any) -> dict[str, Any]:
    spec = {"space": SPACE, "trials": 6, "sampler": "tpe", "pruner": "asha", "seed": 1}
    body = {"name": "s", "params": dict(BASE), "search": spec}
    for key, value in changes.items():
        target = body["params"] if key in BASE or key == "validation_split" else spec
        target[key] = value  # type: ignore[index]
    return body


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"validation_split": 0}, "params.validation_split", "> 0"),
        ({"space": {"momentum": {"low": 0.1, "high": 0.9}}}, "search.space", "momentum"),
        ({"space": {"dropout": {"low": 0.4, "high": 0.1}}}, "search.space", "inverted"),
        ({"space": {"dropout": {"low": 0.2, "high": 0.2}}}, "search.space", "empty"),
        (
            {"space": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}},
            "search.space",
            "log range",
        ),
        ({"space": {"optimizer": {"choices": ["adam", "nag"]}}}, "search.space", "nag"),
        ({"space": {"hidden_units": {"choices": [64, 99999]}}}, "search.space", "99999"),
        ({"sampler": "grid"}, "search.sampler", "tpe"),
        ({"pruner": "hyperband"}, "search.pruner", "asha"),
        ({"metric": "test_accuracy"}, "search.metric", "val_accuracy"),
        ({"trials": 201}, "search.trials", "200"),
    ],
)
def test_a_bad_search_is_refused_naming_the_field(
    api: FlaskClient, session: Session, changes: dict[str, Any], field: str, says: str
) -> None:
    answer = api.post("/api/studies", json=search(**changes))
    assert answer.status_code == 422, answer.get_json()
    fields = answer.get_json()["error"]["fields"]
    assert field in fields and says in fields[field], fields
    assert session.scalar(select(Run.id)) is None and session.scalar(select(Study.id)) is None


def test_a_search_with_a_grid_is_refused(api: FlaskClient) -> None:
    answer = api.post("/api/studies", json={**search(), "grid": {"normalize": [True, False]}})
    assert answer.status_code == 422 and "not both" in answer.get_json()["error"]["message"]


def test_a_search_queues_one_trial_per_slot_and_asks_no_more(
    api: FlaskClient, idle: Settings, session: Session
) -> None:
    answer = api.post("/api/studies", json=search(parallel=2))
    assert answer.status_code == 202, answer.get_json()
    study = answer.get_json()
    assert study["search"]["state"] == "searching" and study["search"]["trials"] == {"queued": 2}
    runs = list(session.scalars(select(Run).where(Run.study_id == study["id"])))
    assert len(runs) == 2 and queued_messages(idle) == 2
    assert all(r.validation_split == 0.1 and r.epochs == 9 for r in runs)
    assert runs[0].params != runs[1].params  # two configurations, asked of Optuna in turn
    # A sweep finds the two slots full: nothing more is asked.
    assert sweep_search(session, study["id"]).send == []


def _report(session: Session, run: Run, epoch: int, value: float, last_epoch: int = 9) -> Decision:
    lease = claim(session, run.id, "w@test", 1, 60) if run.status == RunStatus.QUEUED else None
    session.refresh(run)
    from tests.builders import lease_of

    record = EpochRecord(epoch, 0.5, 0.9, 1.0, val_loss=0.3, val_accuracy=value)
    return report_epoch(session, lease or lease_of(run), record, None, last_epoch)


def test_prune_decisions_read_the_stored_reports_and_agree_across_hosts(
    api: FlaskClient, store: Store, session: Session
) -> None:
    """Two sessions stand for two hosts: each decides from the same stored reports, and the
    same reports give the same decision; a weak trial ends `pruned` with its epochs kept, and
    its slot goes to a new trial at once."""
    study_id = api.post("/api/studies", json=search(parallel=3)).get_json()["id"]
    runs = list(session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id)))
    strong, middle, weak = runs
    assert not _report(session, strong, 1, 0.90).pruned  # the first at rung 1: nobody to beat
    session.commit()
    assert not _report(session, middle, 1, 0.95).pruned  # better than the first: goes on
    session.commit()
    # Host B decides on the weak trial (a fresh session of the same store).
    with store.session() as host_b:
        weak_b = host_b.get(Run, weak.id)
        assert weak_b is not None
        decision = _report(host_b, weak_b, 1, 0.50)
        host_b.commit()
    assert decision.pruned and len(decision.send) == 1  # its slot refilled at once
    session.expire_all()
    pruned = session.get(Run, weak.id)
    assert pruned is not None and pruned.status == RunStatus.PRUNED and pruned.epochs_done == 1
    assert pruned.test_accuracy is None and pruned.finished_at is not None
    # Host A, asked the same question on the same stored reports, answers the same.
    from shared.domain.search import SearchSpec, should_prune
    from shared.store.search import trials

    study = session.get(Study, study_id)
    assert study is not None
    _, records = trials(session, study)
    spec = SearchSpec.model_validate(study.search)
    with store.session() as host_b:
        study_b = host_b.get(Study, study_id)
        assert study_b is not None
        _, records_b = trials(host_b, study_b)
    assert records == records_b
    assert should_prune(spec, records, weak.config or 0, 1) is True
    assert should_prune(spec, records, middle.config or 0, 1) is False
    # The new trial is a new configuration of the same study, queued.
    new = session.get(Run, decision.send[0][0])
    assert new is not None and new.status == RunStatus.QUEUED and new.study_id == study_id
    assert new.config == 3


def test_rebuilt_asha_prunes_exactly_as_optunas_own_study_reporting_live() -> None:
    """The rung records rebuilt from stored reports are the ones Optuna writes itself: two
    trials in flight at a time, one epoch each in turn, judged by a live Optuna study (report,
    should_prune) and by `should_prune` on the records alone; every decision agrees."""
    import random

    import optuna

    from shared.domain.search import REDUCTION_FACTOR, SearchSpec, TrialRecord, should_prune

    spec = SearchSpec.model_validate(search(trials=14)["search"])
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0
    )
    live = optuna.create_study(direction="maximize", pruner=pruner)
    draw, epochs = random.Random(5), 9
    quality = [draw.uniform(0.5, 0.95) for _ in range(spec.trials)]
    records: dict[int, TrialRecord] = {}
    in_flight: dict[int, optuna.Trial] = {}
    decisions = {"pruned": 0, "complete": 0}
    while len(records) < spec.trials or in_flight:
        while len(in_flight) < 2 and len(records) < spec.trials:
            number = len(records)
            in_flight[number] = live.ask()
            records[number] = TrialRecord(number, {}, "running")
        number = min(in_flight, key=lambda n: (len(records[n].reports), n))
        epoch = len(records[number].reports) + 1
        value = round(quality[number] - 0.3 / epoch + draw.gauss(0, 0.01), 4)
        reports = {**records[number].reports, epoch: value}
        records[number] = TrialRecord(number, {}, "running", reports)
        in_flight[number].report(value, epoch)
        if epoch == epochs:
            live.tell(in_flight.pop(number), value)
            records[number] = TrialRecord(number, {}, "complete", reports)
            decisions["complete"] += 1
            continue
        pruned = in_flight[number].should_prune()
        assert should_prune(spec, list(records.values()), number, epoch) is pruned, (number, epoch)
        if pruned:
            live.tell(in_flight.pop(number), state=optuna.trial.TrialState.PRUNED)
            records[number] = TrialRecord(number, {}, "pruned", reports)
            decisions["pruned"] += 1
    assert decisions["pruned"] > 0 and decisions["complete"] > 0  # both kinds were decided


def test_the_best_is_chosen_on_validation_data_and_its_test_set_read_once(
    api: FlaskClient, session: Session
) -> None:
    body = search(trials=2, parallel=2, pruner="none", epochs=2, confirm_seeds=2)
    study_id = api.post("/api/studies", json=body).get_json()["id"]
    first, second = session.scalars(select(Run).where(Run.study_id == study_id).order_by(Run.id))
    for run, values in ((first, (0.80, 0.91)), (second, (0.85, 0.88))):
        for epoch, value in enumerate(values, start=1):
            decision = _report(session, run, epoch, value, last_epoch=2)
        session.commit()
        from tests.builders import lease_of

        session.refresh(run)
        decision = finish_trial(session, lease_of(run), b"keras file")
        session.commit()
    # The last trial to end leaves the search choosing its best: the higher final val metric,
    # although the other had the better epoch 1.
    assert decision.test_study == study_id and decision.send == []
    detail = api.get(f"/api/studies/{study_id}").get_json()["search"]
    assert detail["state"] == "testing" and detail["best"]["run_id"] == first.id
    assert detail["best"]["test_accuracy"] is None and detail["epochs_trained"] == 4
    # The curve starts when the first trial completes (after 2 of the 4 epochs).
    assert [(p["epochs"], p["best"]) for p in detail["curve"]] == [(2, 0.91), (3, 0.91), (4, 0.91)]
    assert claim_test(session, study_id) == first.id
    assert claim_test(session, study_id) is None  # taken on: nobody else reads it
    confirmations = record_test(session, study_id, first.id, 0.2, 0.93, EVALUATION)
    assert record_test(session, study_id, first.id, 0.2, 0.99, EVALUATION) is None
    session.commit()
    # The chosen configuration again with two new seeds: ordinary runs, not trials.
    assert confirmations is not None and len(confirmations) == 2
    assert [r.seed for r in confirmations] == [first.seed + 1, first.seed + 2]
    assert all(r.params | {"seed": 0} == first.params | {"seed": 0} for r in confirmations)
    assert all(study_of(session, r.id) is None for r in confirmations)
    assert study_of(session, first.id) == study_id
    detail = api.get(f"/api/studies/{study_id}").get_json()["search"]
    assert detail["state"] == "done" and detail["best"]["test_accuracy"] == 0.93
    assert detail["best"]["final"] and detail["trials"] == {"succeeded": 2}
    assert len(detail["trial_list"]) == 2  # the confirmations are not trials
    assert session.get(Run, second.id).test_accuracy is None  # type: ignore[union-attr]


def test_cancelling_a_search_cancels_its_trials_and_asks_for_no_new_one(
    api: FlaskClient, session: Session
) -> None:
    study_id = api.post("/api/studies", json=search(parallel=2)).get_json()["id"]
    answer = api.post(f"/api/studies/{study_id}/cancel", json={})
    assert answer.status_code == 202
    detail = answer.get_json()
    assert detail["search"]["state"] == "cancelled" and detail["search"]["trials"] == {
        "cancelled": 2
    }
    assert sweep_search(session, study_id).send == []


def test_a_search_page_shows_trials_charts_and_the_best(api: FlaskClient, session: Session) -> None:
    body = search(trials=3, parallel=3, pruner="asha", epochs=3)
    study_id = api.post("/api/studies", json=body).get_json()["id"]
    first, second, third = session.scalars(
        select(Run).where(Run.study_id == study_id).order_by(Run.id)
    )
    from tests.builders import lease_of

    for run, values in ((first, (0.8, 0.85, 0.9)), (second, (0.9, 0.92, 0.95))):
        for epoch, value in enumerate(values, start=1):
            _report(session, run, epoch, value, last_epoch=3)
            session.commit()
        session.refresh(run)
        finish_trial(session, lease_of(run), b"keras")
        session.commit()
    assert _report(session, third, 1, 0.1, last_epoch=3).pruned
    session.commit()
    page = api.get(f"/studies/{study_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for chart in ("search-best-curve", "search-trial-curves", "search-parallel"):
        assert f'id="{chart}"' in html
    assert html.count('class="trial-pruned"') == 1 and html.count('class="trial-succeeded"') == 2
    assert f"run {second.id}</a>" in html  # the best so far: the higher final val accuracy
    assert "Add replicates" not in html


def test_the_form_builds_a_search_from_ranges_and_choices(
    csrf_app: Any, idle: Settings, session: Session
) -> None:
    from tests.support.pages import csrf_token

    client = csrf_app.test_client()
    data = {
        "csrf_token": csrf_token(client, "/studies/new"),
        "mode": "search",
        "trials": "5",
        "sampler": "random",
        "pruner": "median",
        "base_validation_split": "0.1",
        "base_epochs": "4",
        "vary_learning_rate": "0.0001, 0.1, log",
        "vary_dropout": "0, 0.5",
        "vary_optimizer": "adam, sgd",
        "vary_hidden_units": "32, 64, 128",
    }
    answer = client.post("/studies/new", data=data)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    study = session.scalars(select(Study)).one()
    assert study.search is not None and study.search["space"] == {
        "learning_rate": {"low": 0.0001, "high": 0.1, "log": True},
        "dropout": {"low": 0.0, "high": 0.5, "log": False},
        "optimizer": {"choices": ["adam", "sgd"]},
        "hidden_units": {"choices": [32, 64, 128]},
    }
    assert (study.search["trials"], study.search["sampler"], study.search["pruner"]) == (
        5,
        "random",
        "median",
    )
    # Without a validation split the form says why, beside it.
    data["base_validation_split"] = ""
    answer = client.post("/studies/new", data=data)
    assert answer.status_code == 422 and "validation_split" in answer.get_data(as_text=True)


def test_a_sweep_fills_the_slot_of_a_trial_that_failed_with_its_worker(
    api: FlaskClient, session: Session
) -> None:
    from shared.store.sweeps import take_back

    study_id = api.post("/api/studies", json=search(parallel=1)).get_json()["id"]
    [trial] = session.scalars(select(Run).where(Run.study_id == study_id))
    assert claim(session, trial.id, "gone@test", 1, 60) is not None
    session.commit()
    session.refresh(trial)
    # Its worker is lost for the last time: the sweep fails it, and says nothing to the search.
    assert not take_back(session, trial, "its pool process died", 1, if_expired=False)
    session.commit()
    decision = sweep_search(session, study_id)
    session.commit()
    assert len(decision.send) == 1  # the free slot gets the next configuration
    new = session.get(Run, decision.send[0][0])
    assert new is not None and new.config == 1 and new.status == RunStatus.QUEUED
    assert sweep_search(session, study_id).send == []  # and only one
