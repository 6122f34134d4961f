"""A search's trials trained by execute_run in this process (real TensorFlow, real database): the
job's epochs ask the store whether to go on, pruned trials free their slot for the next
configuration, and the best's test set is read once, by the worker that ended the last trial."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.search import SearchSpec
from shared.domain.status import RunStatus
from shared.store.engine import Store
from shared.store.models import Epoch, Evaluation, Run, Study
from shared.store.search import create_search
from worker import jobs
from worker.jobs import Outcome
from worker.process import WorkerContext, load_training


class Queue(list[tuple[int, str]]):
    """The messages the jobs send, taken in order by `drain` (a one-process cluster)."""

    def __call__(self, run_id: int, queue: str) -> None:
        self.append((run_id, queue))


def drain(context: WorkerContext, queue: Queue) -> list[tuple[int, Outcome]]:
    outcomes = []
    while queue:
        run_id, _ = queue.pop(0)
        outcomes.append((run_id, jobs.execute_run(context, run_id, "inline@test")))
    return outcomes


def test_a_search_runs_its_trials_prunes_weak_ones_and_tests_the_best_once(
    settings: Settings, store: Store, session: Session
) -> None:
    queue = Queue()
    context = WorkerContext(settings, store, load_training(settings), queue)
    spec = SearchSpec.model_validate(
        {
            "space": {
                "learning_rate": {"low": 0.00001, "high": 0.3, "log": True},
                "optimizer": {"choices": ["adam", "sgd"]},
            },
            "trials": 6,
            "parallel": 2,
            "seed": 3,
            "confirm_seeds": 1,
        }
    )
    base = {"epochs": 3, "validation_split": 0.2, "train_samples": 500, "hidden_units": 32}
    study, runs = create_search(session, "s", base, spec, 7, "training")
    session.commit()
    queue += [(run.id, run.queue) for run in runs]
    outcomes = drain(context, queue)

    session.expire_all()
    study = session.get(Study, study.id)  # type: ignore[assignment]
    runs = list(session.scalars(select(Run).where(Run.study_id == study.id).order_by(Run.id)))
    trials, [confirmation] = runs[:6], runs[6:]
    assert study.search_state == "done" and all(t.seed == 7 for t in trials)
    assert {o for _, o in outcomes} <= {Outcome.SUCCEEDED, Outcome.PRUNED}
    statuses = [t.status for t in trials]
    assert RunStatus.PRUNED in statuses and RunStatus.SUCCEEDED in statuses
    for trial in trials:
        epochs = list(session.scalars(select(Epoch.epoch).where(Epoch.run_id == trial.id)))
        # A pruned trial keeps the epochs it trained and trains none after the decision.
        assert epochs == list(range(1, trial.epochs_done + 1))
        if trial.status == RunStatus.PRUNED:
            assert trial.epochs_done < 3
    # The best: the complete trial with the highest final validation accuracy, and only it
    # has a test accuracy and an evaluation.
    final = {
        t.id: session.scalar(
            select(Epoch.val_accuracy).where(Epoch.run_id == t.id, Epoch.epoch == 3)
        )
        for t in trials
        if t.status == RunStatus.SUCCEEDED
    }
    assert study.best_run_id == max(final, key=lambda i: (final[i], -i))
    tested = [t.id for t in trials if t.test_accuracy is not None]
    assert tested == [study.best_run_id]
    # Then the chosen configuration once more with a new seed: an ordinary run, tested itself.
    best = next(t for t in trials if t.id == study.best_run_id)
    assert (confirmation.config, confirmation.seed) == (best.config, 8)
    assert confirmation.status == RunStatus.SUCCEEDED and confirmation.test_accuracy is not None
    evaluated = set(session.scalars(select(Evaluation.run_id)))
    assert evaluated == {study.best_run_id, confirmation.id}
