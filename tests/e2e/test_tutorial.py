"""The TensorFlow 2 quickstart's table, reproduced through trainyard's own queue.

Two full jobs (60,000 images, 5 epochs, batch 32, Adam): pixels divided by 255, and raw pixels.
The tutorial reports test accuracy 0.9777 (loss 0.0744) and 0.9285 (loss 0.2898).
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from tests.support.app import submit_run
from tests.support.waiting import until_finished

TUTORIAL = {True: (0.9777, 0.0744, 0.005), False: (0.9285, 0.2898, 0.015)}
# A fixed seed makes the CI figures repeatable; it is the first one `bench.tutorial_seeds` tries,
# not a chosen one. Seeds 1-8 measured here: 0.9764-0.9799 normalized, 0.9265-0.9365 raw.
SEED = 1


@pytest.mark.slow
def test_the_quickstart_table_is_reproduced_through_the_queue(
    settings: Settings,
    worker: Settings,
    client: FlaskClient,
    session: Session,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = {
        normalize: submit_run(
            client, f"quickstart normalize={normalize}", normalize=normalize, seed=SEED
        )
        for normalize in (True, False)
    }
    runs = until_finished(session, *ids.values(), timeout=600, interval=1)
    results = dict(zip(ids, runs, strict=True))
    lines = ["", "  normalize | test accuracy (tutorial) | test loss (tutorial) | seed | seconds"]
    for normalize, run in results.items():
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert (run.epochs, run.batch_size, run.train_samples, run.optimizer) == (
            5,
            32,
            60000,
            "adam",
        )
        assert len(run.epoch_rows) == 5
        accuracy, loss, _ = TUTORIAL[normalize]
        seconds = (run.finished_at - run.started_at).total_seconds()
        lines.append(
            f"  {normalize!s:9} | {run.test_accuracy:.4f} ({accuracy})          | "
            f"{run.test_loss:.4f} ({loss})      | {run.seed} | {seconds:.0f}"
        )
    with capsys.disabled():  # the figures belong in the CI log
        print("\n".join(lines))
    for normalize, run in results.items():
        accuracy, _, tolerance = TUTORIAL[normalize]
        assert abs(run.test_accuracy - accuracy) <= tolerance, (normalize, run.test_accuracy)
    assert results[True].test_accuracy - results[False].test_accuracy >= 0.03
