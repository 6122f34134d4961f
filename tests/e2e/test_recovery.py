"""A worker process killed mid-run: the run is taken up again, never stuck, never trained twice at once."""

from __future__ import annotations

import os
import signal
import subprocess

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.models import RunStatus
from shared.queries import get_run
from tests.support import create_test_app, wait_for, worker_process


def test_a_killed_pool_process_is_replaced_and_the_run_resumes(
    settings: Settings, session: Session
) -> None:
    fragile = settings.with_overrides(queue=f"{settings.queue}-crash", heartbeat_timeout=5.0)
    client = create_test_app(fragile).test_client()
    with worker_process(fragile, name="crash-worker") as worker:
        response = client.post(
            "/api/runs", json={"params": {"train_samples": 20000, "epochs": 3, "seed": 9}}
        )
        run_id = response.get_json()["id"]

        def first_epoch() -> bool:
            session.expire_all()
            return get_run(session, run_id).epochs_done >= 1

        wait_for(first_epoch, 120, what="the first epoch")
        children = subprocess.run(
            ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True
        ).stdout.split()
        assert children, "the worker has a pool process"
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)

        def finished() -> bool:
            session.expire_all()
            return get_run(session, run_id).status not in (RunStatus.QUEUED, RunStatus.RUNNING)

        wait_for(finished, 180, interval=0.5, what="the run to finish after the crash")
    run = get_run(session, run_id)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 2
    assert [e.epoch for e in run.epoch_rows] == [1, 2, 3]
