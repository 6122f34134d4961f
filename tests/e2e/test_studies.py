"""A small study end to end on a real worker: through the API, the CLI and the browser, its
summary checked against statistics computed independently from the runs' own figures."""

from __future__ import annotations

import re
import statistics
from typing import Any

import pytest
from playwright.sync_api import Browser
from scipy import stats as scipy_stats
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.client import Client
from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.models import Run
from tests.support.browser import (
    assert_console_clean,
    mark_loaded,
    new_page,
    same_document,
    screenshot,
)
from tests.support.processes import cli_env, run_trainyard
from tests.support.waiting import until_finished

# Two configurations x three seeds on a slice of MNIST: seconds a run.
SMALL = {"train_samples": 3000, "epochs": 2}


def assert_summary_is_honest(summary: dict[str, Any], session: Session) -> None:
    """Every figure of the summary, recomputed from the runs' own test accuracies."""
    runs = list(session.scalars(select(Run).where(Run.study_id == summary["id"])))
    assert len(runs) == summary["runs"] and {r.status for r in runs} == {RunStatus.SUCCEEDED}
    by_config = {c["index"]: [r.test_accuracy for r in runs if r.config == c["index"]]
                 for c in summary["configurations"]}  # fmt: skip
    for config in summary["configurations"]:
        values = by_config[config["index"]]
        assert config["n"] == len(values) == summary["replicates"]
        assert config["test_accuracy"]["mean"] == pytest.approx(statistics.mean(values))
        assert config["test_accuracy"]["std"] == pytest.approx(statistics.stdev(values))
    for comparison in summary["comparisons"]:
        if comparison["metric"] != "test_accuracy":
            continue
        test = scipy_stats.ttest_ind(
            by_config[comparison["config"]], by_config[comparison["baseline"]], equal_var=False
        )
        assert comparison["p_value"] == pytest.approx(test.pvalue)
        assert comparison["ci95"] == pytest.approx(list(test.confidence_interval(0.95)))


def test_a_study_through_the_api(
    settings: Settings, worker: Settings, live_server: str, session: Session
) -> None:
    client = Client(live_server)
    study = client.submit_study(
        {"name": "api study", "params": SMALL, "grid": {"normalize": [True, False]}, "seeds": 3}
    )
    [summary] = until_finished(client, study["id"], study=True)
    assert summary["status"] == "finished"
    assert_summary_is_honest(summary, session)
    verdict = summary["comparisons"][0]["verdict"]
    assert verdict.startswith("raw pixels: ")
    # Curves: the mean of each epoch over the seeds.
    curve = summary["configurations"][0]["curves"]["loss"]
    assert [(p["epoch"], p["n"]) for p in curve] == [(1, 3), (2, 3)]


def test_a_study_through_the_cli(
    settings: Settings, worker: Settings, live_server: str, session: Session
) -> None:
    done = run_trainyard(
        "study", "run", "--name", "cli study", "--grid", "optimizer=adam,sgd",
        "-p", "train_samples=3000", "-p", "epochs=2", "--seeds", "3", "--wait",
        env=cli_env(settings, live_server), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    queued = re.search(r"study (\d+) queued", done.stderr)
    assert queued, done.stderr
    study_id = int(queued.group(1))
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"study {study_id} (cli study): finished, 6 of 6 runs done")
    assert any(line.startswith("optimizer=sgd: ") for line in lines), done.stdout
    assert "Welch" in lines[-1]
    summary = Client(live_server).study(study_id)
    assert_summary_is_honest(summary, session)
    shown = run_trainyard("study", "show", str(study_id), env=cli_env(settings, live_server))
    assert shown.returncode == 0 and summary["comparisons"][0]["verdict"] in shown.stdout


@pytest.mark.browser
def test_a_study_in_the_browser(
    settings: Settings, worker: Settings, live_server: str, session: Session, browser: Browser
) -> None:
    page = new_page(browser)
    page.goto(f"{live_server}/studies")
    page.click("#preset-normalization")
    page.wait_for_url(re.compile(r"/studies/new\?preset=normalization"))
    assert page.input_value("input[name=vary_normalize]") == "true, false"
    page.fill("input[name=seeds]", "3")
    page.fill("input[name=base_train_samples]", "3000")
    page.fill("input[name=base_epochs]", "2")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    mark_loaded(page)
    # Live progress: the page follows the runs without a reload until the study is finished.
    page.wait_for_selector("#study-status:text('finished')", timeout=240_000)
    assert same_document(page), "the page reloaded"
    assert page.text_content("#study-progress") == "6 of 6 runs done"
    verdict = page.text_content("#comparisons-table td.verdict")
    summary = Client(live_server).study(study_id)
    assert verdict == summary["comparisons"][0]["verdict"]
    assert_summary_is_honest(summary, session)
    means = page.evaluate(
        """() => window.trainyardCharts.loss.data.datasets
                 .filter(d => d.kind === 'mean').map(d => d.data.length)"""
    )
    assert means == [2, 2]
    screenshot(page, "study.png")
    # More seeds, from the page.
    page.fill("#replicates-form input[name=seeds]", "1")
    page.click("#add-replicates")
    page.wait_for_selector("#study-status:text('finished')", timeout=240_000)
    assert Client(live_server).study(study_id)["replicates"] == 4
    assert_console_clean()
