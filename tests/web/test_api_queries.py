"""GET /api/runs: each filter, each sort field, pagination and the 400s, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.domain.filters import NUMERIC_PARAMS, SORT_FIELDS
from shared.domain.params import PARAM_NAMES
from shared.domain.status import RunStatus
from shared.store.models import Run
from tests.builders import make_run

# Two values of each hyperparameter: runs are built with the first, one run with the second.
VALUES: dict[str, tuple[Any, Any]] = {
    "epochs": (2, 7),
    "batch_size": (32, 128),
    "learning_rate": (0.001, 0.05),
    "optimizer": ("adam", "sgd"),
    "hidden_units": (128, 512),
    "dropout": (0.2, 0.5),
    "normalize": (True, False),
    "validation_split": (0.0, 0.25),
    "train_samples": (1000, 5000),
    "seed": (1, 99),
}


def ids(client: FlaskClient, query: str) -> list[int]:
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [run["id"] for run in response.get_json()["runs"]]


def text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_hyperparameter_has_filter_values() -> None:
    assert set(VALUES) == set(PARAM_NAMES)


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_equality_filter_on_each_hyperparameter(
    client: FlaskClient, session: Session, name: str
) -> None:
    base = {key: first for key, (first, _) in VALUES.items()}
    plain = make_run(session, **base)
    odd = make_run(session, **{**base, name: VALUES[name][1]})
    assert ids(client, f"{name}={text(VALUES[name][1])}") == [odd.id]
    assert ids(client, f"{name}={text(VALUES[name][0])}") == [plain.id]


@pytest.mark.parametrize("name", NUMERIC_PARAMS)
def test_range_filters_on_each_numeric_hyperparameter(
    client: FlaskClient, session: Session, name: str
) -> None:
    low, high = VALUES[name]
    base = {key: first for key, (first, _) in VALUES.items()}
    small = make_run(session, **base)
    big = make_run(session, **{**base, name: high})
    assert ids(client, f"{name}_min={high}") == [big.id]
    assert ids(client, f"{name}_max={low}") == [small.id]
    assert ids(client, f"{name}_min={low}&{name}_max={high}&sort=id") == [small.id, big.id]


def test_status_filter_takes_one_or_several(client: FlaskClient, session: Session) -> None:
    queued = make_run(session)
    running = make_run(session, status=RunStatus.RUNNING)
    failed = make_run(session, status=RunStatus.FAILED)
    assert ids(client, "status=queued") == [queued.id]
    assert ids(client, "status=running,failed&sort=id") == [running.id, failed.id]
    assert client.get("/api/runs?status=done").status_code == 400


def test_test_accuracy_range(client: FlaskClient, session: Session) -> None:
    make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.90)
    good = make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.97)
    make_run(session)  # no accuracy yet: never matches a range
    assert ids(client, "test_accuracy_min=0.95") == [good.id]
    assert len(ids(client, "test_accuracy_max=0.95")) == 1


def test_the_scripted_question_from_the_issue(client: FlaskClient, session: Session) -> None:
    """Every run with normalize off and test accuracy above 0.95, best first."""
    make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.99, normalize=True)
    ok = make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.96, normalize=False)
    best = make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.98, normalize=False)
    make_run(session, status=RunStatus.SUCCEEDED, test_accuracy=0.90, normalize=False)
    query = "normalize=false&test_accuracy_min=0.95&sort=-test_accuracy"
    assert ids(client, query) == [best.id, ok.id]


def test_created_range_reads_zones(client: FlaskClient, session: Session) -> None:
    old, new = make_run(session), make_run(session)
    day = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    session.execute(update(Run).where(Run.id == old.id).values(created_at=day))
    session.execute(update(Run).where(Run.id == new.id).values(created_at=day + timedelta(days=2)))
    session.commit()
    assert ids(client, "created_after=2026-01-11T00:00:00Z") == [new.id]
    assert ids(client, "created_before=2026-01-11") == [old.id]
    # 13:00 at +02:00 is 11:00 UTC, before the old run's 12:00.
    assert ids(client, "created_after=2026-01-10T13:00:00%2B02:00&sort=id") == [old.id, new.id]


def test_name_search_is_case_insensitive_and_literal(client: FlaskClient, session: Session) -> None:
    hit = make_run(session, name="Big Batch 100%")
    make_run(session, name="small")
    make_run(session, name="Big Batch 1000")
    assert ids(client, "q=batch 100%25") == [hit.id]
    assert ids(client, "q=BIG&sort=id")[0] == hit.id


def _sort_value(run: dict[str, Any], field: str) -> Any:
    value = run["params"][field] if field in run["params"] else run[field]
    if field == "epochs_done":
        return run["epochs_done"]
    if isinstance(value, str) and field.endswith("_at"):
        return datetime.fromisoformat(value)
    return value


@pytest.mark.parametrize("field", SORT_FIELDS)
@pytest.mark.parametrize("descending", [False, True])
def test_each_sort_field_in_both_directions(
    client: FlaskClient, session: Session, field: str, descending: bool
) -> None:
    make_run(session, name="b", status=RunStatus.RUNNING, epochs_done=1, **_params(1))
    make_run(
        session, name="c", status=RunStatus.SUCCEEDED, epochs_done=2, test_accuracy=0.9,
        test_loss=0.3, **_params(2),
    )  # fmt: skip
    make_run(session, name="a", **_params(0))
    make_run(
        session, name="d", status=RunStatus.SUCCEEDED, epochs_done=1, test_accuracy=0.8,
        test_loss=0.5, **_params(1),
    )  # fmt: skip
    sort = f"-{field}" if descending else field
    runs = client.get(f"/api/runs?sort={sort}").get_json()["runs"]
    present = [r for r in runs if _sort_value(r, field) is not None]
    absent = [r for r in runs if _sort_value(r, field) is None]

    def key(run: dict[str, Any]) -> Any:
        value = _sort_value(run, field)
        return (value, run["id"])

    expected = sorted(present, key=key, reverse=descending) + sorted(
        absent, key=lambda r: r["id"], reverse=descending
    )
    assert [r["id"] for r in runs] == [r["id"] for r in expected]


def _params(i: int) -> dict[str, Any]:
    return {name: values[i % 2] for name, values in VALUES.items()} | {"seed": 10 - i}


def test_pages_are_stable_and_counted(client: FlaskClient, session: Session) -> None:
    made = [make_run(session, learning_rate=0.01).id for _ in range(7)]
    seen: list[int] = []
    for page in (1, 2, 3):
        answer = client.get(f"/api/runs?limit=3&page={page}&sort=learning_rate").get_json()
        assert (answer["total"], answer["pages"], answer["limit"]) == (7, 3, 3)
        seen += [run["id"] for run in answer["runs"]]
    assert seen == sorted(made)  # ties broken by id: no run twice, none skipped
    assert client.get("/api/runs?page=9").get_json()["runs"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("colour=red", "colour"),
        ("sort=colour", "sort"),
        ("sort=-", "sort"),
        ("epochs=1&epochs=2", "epochs"),
        ("epochs=three", "epochs"),
        ("epochs=1.0", "epochs"),
        ("epochs=99999999999", "epochs"),
        ("learning_rate_min=nan", "learning_rate_min"),
        ("normalize=yes", "normalize"),
        ("optimizer=adamw", "optimizer"),
        ("created_after=123", "created_after"),
        ("created_after=2026-13-01", "created_after"),
        ("created_after=0001-01-01T00:00:00%2B05:00", "created_after"),
        ("q=a%00b", "q"),
        ("q=" + "x" * 201, "q"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("page=0", "page"),
    ],
)
def test_bad_queries_are_400_naming_the_key(client: FlaskClient, query: str, field: str) -> None:
    response = client.get(f"/api/runs?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert field in response.get_json()["error"]["fields"]
