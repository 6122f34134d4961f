"""Cancel from the run page on a real worker: a running job stops within an epoch, a queued one
never starts."""

from __future__ import annotations

import time

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.models import Epoch, utcnow
from tests.support.pages import find
from tests.support.runs import epoch_rows, read_run
from tests.support.waiting import until_finished, wait_for

FORM_DEFAULTS = {"normalize": "y", "seed": "1"}


def submit_form(client: FlaskClient, **fields: object) -> int:
    """Post the New run form as a browser without JavaScript would; return the new run's id."""
    response = client.post(
        "/runs/new", data={**FORM_DEFAULTS, **{k: str(v) for k, v in fields.items()}}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_cancel_stops_a_running_job_and_a_queued_one_never_starts(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    # 30 epochs on all 60,000 images: minutes of work, so only a cancel ends it soon.
    long = submit_form(client, name="too long", train_samples=60000, epochs=30)
    queued = submit_form(client, name="never runs", train_samples=500, epochs=1)
    after = submit_form(client, name="runs after", train_samples=500, epochs=1)

    # A queued run is cancelled at once.
    assert client.post(f"/runs/{queued}/cancel").status_code == 302
    assert read_run(session, queued).status == RunStatus.CANCELLED

    wait_for(lambda: len(epoch_rows(session, long)) >= 1, 180, interval=0.1, what="the first epoch")
    first = session.scalar(select(Epoch).where(Epoch.run_id == long, Epoch.epoch == 1))
    assert first is not None
    epoch_seconds = first.seconds
    assert read_run(session, long).status == RunStatus.RUNNING

    page = client.post(f"/runs/{long}/cancel", follow_redirects=True).get_data(as_text=True)
    asked, accepted = time.monotonic(), utcnow()
    assert "cancel requested" in page
    # The job reads the flag every second (WATCH_INTERVAL) and its graph stops after the current
    # batch.
    [run] = until_finished(session, long, timeout=10, interval=0.05)
    took = time.monotonic() - asked
    assert run.status == RunStatus.CANCELLED, run.error
    print(f"\ncancel: epoch {epoch_seconds:.1f} s, stopped {took:.2f} s after the request")
    assert took < 2.0
    assert all(e.recorded_at <= accepted for e in run.epoch_rows), "an epoch after the cancel"
    assert 1 <= run.epochs_done < 30
    assert len(epoch_rows(session, long)) == run.epochs_done  # completed epochs are kept
    assert run.test_accuracy is None

    html = client.get(f"/runs/{long}").get_data(as_text=True)
    assert find(html, "span", id="run-status")[0]["text"] == "cancelled"
    assert "hidden" in find(html, "form", id="cancel-form")[0]["attrs"]
    assert client.post(f"/runs/{long}/cancel", follow_redirects=True).status_code == 200

    # The worker takes messages in order: once the later run is done, the cancelled one was seen.
    [later] = until_finished(session, after, timeout=120)
    assert later.status == RunStatus.SUCCEEDED
    skipped = read_run(session, queued)
    assert skipped.status == RunStatus.CANCELLED
    assert skipped.started_at is None and skipped.attempt == 0
    assert len(epoch_rows(session, queued)) == 0
