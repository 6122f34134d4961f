"""The runs and compare pages with 10,000 runs and 200,000 epoch rows in the store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.migrate import upgrade
from shared.store.models import Epoch, Run
from tests.support.app import client_for
from tests.support.machine import ROOT, empty_database
from tests.support.pages import find, page, run_ids
from tests.support.scale import seed_store


@dataclass(frozen=True)
class Seeded:
    """The module's store of 10,000 runs: settings on it, and the rows as seeded."""

    settings: Settings
    rows: list[dict[str, Any]]


@pytest.fixture(scope="module")
def seeded(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A database of the module's own (PostgreSQL in the PostgreSQL tier), seeded once: the
    tests only read it."""
    with empty_database(tmp_path_factory.mktemp("scale")) as url:
        upgrade(url)
        store = Store(url)
        try:
            with store.session_scope() as session:
                rows = seed_store(session)
                assert session.scalar(select(func.count(Run.id))) == 10_000
                assert session.scalar(select(func.count(Epoch.id))) == 200_000
        finally:
            store.close()
        yield Seeded(migrated.with_overrides(database_url=url), rows)


@pytest.fixture()
def client(seeded: Seeded) -> FlaskClient:
    """A client of the app on the seeded store."""
    return client_for(seeded.settings)


@pytest.fixture()
def loaded_runs() -> Iterator[list[int]]:
    """Count the Run rows the ORM loads, so a test can tell a page never loads them all."""
    loaded: list[int] = []

    def count(target: Run, _: Any) -> None:
        loaded.append(target.id)

    event.listen(Run, "load", count)
    yield loaded
    event.remove(Run, "load", count)


def expected(rows: list[dict[str, Any]], keep: Any, sort: str) -> list[int]:
    """The ids the query should list, computed in Python from the seeded rows."""
    field = sort.lstrip("-")
    chosen = [r for r in rows if keep(r)]
    present = [r for r in chosen if r[field] is not None]
    absent = [r for r in chosen if r[field] is None]
    reverse = sort.startswith("-")
    present.sort(key=lambda r: (r[field], r["id"]), reverse=reverse)
    absent.sort(key=lambda r: r["id"], reverse=reverse)
    return [r["id"] for r in present + absent]


def test_runs_page_filters_sorts_and_pages_10000_runs(
    client: FlaskClient, seeded: Seeded, loaded_runs: list[int]
) -> None:
    rows = seeded.rows
    html = page(client, "/runs")
    # Counted exactly only up to 1,000: past it the page says so, as "more than" (SQLite) or
    # "about" the planner's estimate (PostgreSQL), never a number that looks exact.
    total = find(html, "small", id="runs-total")[0]
    if total["attrs"]["data-relation"] == "gte":
        assert total["attrs"]["data-total"] == "1000"
        assert "more than 1,000 matching" in total["text"]
        assert "page 1 of more than 40" in html
    else:
        assert total["attrs"]["data-relation"] == "about"
        assert int(total["attrs"]["data-total"]) > 1000
        assert "about " in total["text"] and "page 1 of about " in html
    assert run_ids(html) == sorted((r["id"] for r in rows), reverse=True)[:25]
    assert len(loaded_runs) == 25  # one page, never the whole table

    def keep(r: dict[str, Any]) -> bool:
        return r["optimizer"] == "sgd" and not r["normalize"] and r["hidden_units"] >= 128

    want = expected(rows, keep, "-test_accuracy")
    query = "optimizer=sgd&normalize=false&hidden_units_min=128&sort=-test_accuracy&limit=50"
    html = page(client, f"/runs?{query}&page=2")
    assert find(html, "small", id="runs-total")[0]["attrs"]["data-total"] == str(len(want))
    assert run_ids(html) == want[50:100]

    last = -(-len(want) // 50)
    assert run_ids(page(client, f"/runs?{query}&page={last}")) == want[50 * (last - 1) :]
    assert run_ids(page(client, f"/runs?{query}&page={last + 1}")) == []

    running = page(client, "/runs?status=running&limit=200")
    assert len(run_ids(running)) == 100
    assert all(
        "epoch 40 of 50" in e["text"] for e in find(running, "td", **{"class": "progress-cell"})
    )

    ranged = expected(
        rows,
        lambda r: (
            r["test_accuracy"] is not None
            and 0.98 <= r["test_accuracy"] <= 0.985
            and r["learning_rate"] <= 0.003
        ),
        "test_accuracy",
    )
    html = page(
        client,
        "/runs?test_accuracy_min=0.98&test_accuracy_max=0.985&learning_rate_max=0.003"
        "&sort=test_accuracy&limit=200",
    )
    assert run_ids(html) == ranged[:200]

    # Walking the pages of a filter lists every match exactly once, in order.
    want = expected(rows, lambda r: r["optimizer"] == "adam" and r["normalize"], "-hidden_units")
    seen: list[int] = []
    for number in range(1, -(-len(want) // 200) + 1):
        url = f"/runs?optimizer=adam&normalize=true&sort=-hidden_units&limit=200&page={number}"
        seen += run_ids(page(client, url))
    assert seen == want


def test_compare_20_runs_among_10000(
    client: FlaskClient, seeded: Seeded, loaded_runs: list[int]
) -> None:
    done = [r for r in seeded.rows if r["status"] == RunStatus.SUCCEEDED][-20:]
    ids = ",".join(str(r["id"]) for r in done)
    html = page(client, f"/compare?ids={ids}")
    assert len(set(loaded_runs)) == 20
    header = find(html, "table", id="params-table")
    assert header
    columns = [e for e in find(html, "th") if "data-run-id" in e["attrs"]]
    assert len(columns) == 40  # params table and figures table
    differing = {e["attrs"]["data-param"] for e in find(html, "tr", data_differs="true")}
    assert differing == {
        name
        for name in ("batch_size", "learning_rate", "optimizer", "hidden_units", "dropout",
                     "normalize", "validation_split", "seed")
        if len({r[name] for r in done}) > 1
    }  # fmt: skip
    base = done[0]["test_accuracy"]
    deltas = {
        int(c["attrs"]["data-run-id"]): float(c["attrs"]["data-delta"])
        for c in find(html, "td", data_field="test_accuracy")
    }
    assert deltas == {r["id"]: pytest.approx(r["test_accuracy"] - base, abs=1e-6) for r in done}


def test_the_server_keeps_its_startup_heap_out_of_full_collections(settings: Settings) -> None:
    """gunicorn's app module freezes what startup made: a request that sets off a full collection
    then walks what requests made, not every module's objects (40-50 ms pauses otherwise)."""
    script = "import gc, web.wsgi; print(gc.get_freeze_count(), gc.get_count()[2])"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        cwd=ROOT,
        env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    frozen, oldest = map(int, done.stdout.split())
    assert frozen > 50_000
    assert oldest == 0
