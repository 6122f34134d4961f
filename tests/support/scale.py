"""The 10,000-run store: runs whose hyperparameters cycle, so every filter has a known answer, and
200,000 epoch rows, bulk-inserted. tests/web/test_pages_scale.py checks the pages on it;
`python -m bench.runs_pages` times them on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from shared.domain.params import OPTIMIZERS
from shared.domain.status import RunStatus
from shared.store.models import Epoch, Run

RUNS = 10_000
EPOCHS_PER_RUN = 20  # 100 queued runs have none, 100 running ones have 40: 200,000 rows in all
HIDDEN = (32, 64, 128, 256, 512)
RATES = (0.001, 0.003, 0.01, 0.03)
BATCHES = (32, 64, 128)
DROPOUTS = (0.0, 0.2, 0.5)
START = datetime(2026, 1, 1, tzinfo=UTC)


def run_row(i: int) -> dict[str, Any]:
    """The i-th seeded run: every hyperparameter cycles, so filters have known answers."""
    kind = i % 100
    status = {0: RunStatus.QUEUED, 1: RunStatus.RUNNING, 2: RunStatus.FAILED}.get(
        kind, RunStatus.CANCELLED if kind == 3 else RunStatus.SUCCEEDED
    )
    epochs, done = {
        RunStatus.QUEUED: (20, 0),
        RunStatus.RUNNING: (50, 40),
        RunStatus.CANCELLED: (30, EPOCHS_PER_RUN),
    }.get(status, (EPOCHS_PER_RUN, EPOCHS_PER_RUN))
    optimizer = OPTIMIZERS[i % 3]
    created = START + timedelta(seconds=60 * i)
    succeeded = status == RunStatus.SUCCEEDED
    return {
        "name": f"sweep-{i:05d} {optimizer}",
        "status": status,
        "epochs": epochs,
        "batch_size": BATCHES[(i // 3) % 3],
        "learning_rate": RATES[i % 4],
        "optimizer": optimizer,
        "hidden_units": HIDDEN[i % 5],
        "dropout": DROPOUTS[(i // 7) % 3],
        "normalize": i % 2 == 0,
        "validation_split": 0.1 if i % 4 == 0 else 0.0,
        "train_samples": 60000,
        "seed": i,
        "created_at": created,
        "started_at": None if status == RunStatus.QUEUED else created + timedelta(seconds=5),
        "finished_at": created + timedelta(seconds=125) if status.finished else None,
        "worker": None if status == RunStatus.QUEUED else "bench@host",
        "attempt": 0 if status == RunStatus.QUEUED else 1,
        "cancel_requested": status == RunStatus.CANCELLED,
        "epochs_done": done,
        "test_accuracy": round(0.85 + (i * 7919 % 1000) * 0.00014, 6) if succeeded else None,
        "test_loss": round(0.05 + (i * 104729 % 1000) * 0.0003, 6) if succeeded else None,
        "error": "bench: simulated failure" if status == RunStatus.FAILED else None,
    }


def _epoch_rows(run_id: int, done: int, validation: bool) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "epoch": e,
            "loss": 1.0 / e,
            "accuracy": 1.0 - 0.5 / e,
            "val_loss": 1.1 / e if validation else None,
            "val_accuracy": 1.0 - 0.55 / e if validation else None,
            "seconds": 6.0,
            "recorded_at": START,
        }
        for e in range(1, done + 1)
    ]


def seed_store(session: Session, runs: int = RUNS, start: int = 0) -> list[dict[str, Any]]:
    """Bulk-insert runs number `start` to `start + runs` and their epochs; commit; return them."""
    rows = [run_row(i) for i in range(start, start + runs)]
    for start in range(0, len(rows), 2000):
        session.execute(insert(Run), rows[start : start + 2000])
    ids = dict(session.execute(select(Run.seed, Run.id)).all())
    for row in rows:
        row["id"] = ids[row["seed"]]
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.extend(_epoch_rows(row["id"], row["epochs_done"], row["validation_split"] > 0))
        if len(batch) >= 20_000:
            session.execute(insert(Epoch), batch)
            batch = []
    if batch:
        session.execute(insert(Epoch), batch)
    session.commit()
    return rows
