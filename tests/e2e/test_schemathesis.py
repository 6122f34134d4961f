"""schemathesis against /api/openapi.json on a live gunicorn: every standard check, zero failures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.models import Run, utcnow
from tests.support.machine import ROOT
from tests.support.processes import web_process

TOKEN = "schemathesis-token"


def test_schemathesis_finds_nothing(
    settings: Settings, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fuzz every operation with auth enforced; runs land on a queue no worker reads."""
    # Negative cases repeat parameters into multi-kilobyte URLs, which gunicorn itself answers
    # 414 (HTML) before the app sees them; lift that limit so the API's own answers are tested.
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--limit-request-line 0")
    queue = f"trainyard-fuzz-{uuid.uuid4().hex[:8]}"
    # The server's limits (a job's compute, the queue's room) are policies with tests of their own:
    # here they are lifted, so any request the document allows must be accepted.
    served = settings.with_overrides(
        api_token=TOKEN, queue=queue, max_job_tflop=1e9, max_queued_runs=10**6
    )
    broker = redis.Redis.from_url(settings.broker_url)
    try:
        with web_process(served) as url:
            result = subprocess.run(
                [
                    str(Path(sys.executable).parent / "schemathesis"),
                    "--config-file", str(Path(__file__).parent / "schemathesis.toml"),
                    "run",
                    f"{url}/api/openapi.json",
                    "--header", f"Authorization: Bearer {TOKEN}",
                    "--max-examples", os.environ.get("TRAINYARD_FUZZ_EXAMPLES", "30"),
                    "--phases", "examples,coverage,fuzzing,stateful",
                    "--request-timeout", "20",
                    "--seed", os.environ.get("TRAINYARD_FUZZ_SEED", "4"),
                    "--workers", "2",
                    "--suppress-health-check", "all",
                    "--report", "junit",
                    "--report-dir", str(tmp_path),
                    "--no-color",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=400,
            )  # fmt: skip
    finally:
        broker.delete(queue)
        broker.close()
        # The runs it queued would fill the session's queue for the tests after it: cancel them.
        with store.session_scope() as session:
            session.execute(
                update(Run)
                .where(Run.queue == queue, Run.status == RunStatus.QUEUED)
                .values(status=RunStatus.CANCELLED, finished_at=utcnow())
            )
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
