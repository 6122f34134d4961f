"""Sending training jobs: admission (cost, queue room), commit-then-enqueue, the producer."""

from __future__ import annotations

import logging
import random

from celery import Celery
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.cost import check_cost
from shared.domain.errors import (
    Conflict,
    InvalidParams,
    TooManyRequests,
    TrainyardError,
    field_errors,
)
from shared.domain.params import INT32_MAX, Hyperparams
from shared.domain.search import SearchSpec, check_request, space_corners
from shared.domain.study_design import StudyRequest, expand, run_params
from shared.ops.celery_config import TASK_NAME, celery_config, prepare_broker
from shared.store.models import Run, Study
from shared.store.queries import find_by_idempotency_key, queued_count
from shared.store.runs import create_run, fail_unsent, mark_sent
from shared.store.search import create_search
from shared.store.studies import add_replicates, create_study, replicate_params, study_runs

logger = logging.getLogger(__name__)


class BrokerUnavailable(TrainyardError):
    """The run was stored but its message could not be sent; the run is marked failed."""

    status = 503
    code = "broker_unavailable"


def make_producer(settings: Settings) -> Celery:
    """Create a Celery app used only to send messages (it registers no tasks)."""
    prepare_broker(settings)
    producer = Celery("trainyard-web")
    producer.conf.update(celery_config(settings))
    producer.conf.broker_connection_retry = False
    producer.conf.broker_connection_max_retries = 1
    return producer


def enqueue(producer: Celery, session: Session, run: Run) -> None:
    """Send the run's message; on failure mark the run failed so it never sits queued forever."""
    try:
        result = producer.send_task(
            TASK_NAME,
            args=[run.id],
            queue=run.queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2},
        )
    except Exception as exc:
        logger.exception("could not enqueue run %s", run.id)
        fail_unsent(session, run.id, f"could not enqueue: {exc}")
        session.commit()
        raise BrokerUnavailable(
            f"the broker is unreachable; run {run.id} was marked failed"
        ) from exc
    mark_sent(session, run.id, result.id)
    session.commit()


def _matches(run: Run, params: dict, name: str | None) -> bool:
    return all(run.params.get(k) == v for k, v in params.items()) and (
        name is None or run.name == name.strip()
    )


class Dispatcher:
    """Submits runs: checks what they cost and how full the queue is, commits each run, then
    sends its message."""

    def __init__(self, settings: Settings) -> None:
        self.producer = make_producer(settings)
        self.settings = settings

    def admit(self, session: Session, runs: list[Hyperparams]) -> None:
        """Refuse, before anything is stored, runs over the compute limit (422) or beyond the
        queue's room (429 with Retry-After)."""
        for params in runs:
            check_cost(params, self.settings.max_job_tflop)
        waiting = queued_count(session)
        room = self.settings.max_queued_runs - waiting
        if len(runs) > room:
            raise TooManyRequests(
                f"the queue is full: {waiting} runs wait, at most "
                f"{self.settings.max_queued_runs} may (TRAINYARD_MAX_QUEUED_RUNS); "
                f"{len(runs)} more do not fit",
                {"queue": f"room for {max(room, 0)} more run(s)"},
            )

    def submit(
        self,
        session: Session,
        params: Hyperparams,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Run, bool]:
        """Create a run, commit it, then enqueue it; return (run, created).

        With an idempotency key seen before, return that run (created False) and send nothing.
        """
        if idempotency_key:
            existing = find_by_idempotency_key(session, idempotency_key)
            if existing is not None:
                return _replay(existing, params, name)
        self.admit(session, [params])
        queue = self.producer.conf.task_default_queue
        try:
            run = create_run(session, params, name, idempotency_key, queue=queue)
            session.commit()
        except IntegrityError:
            # A concurrent request with the same key won the race.
            session.rollback()
            existing = find_by_idempotency_key(session, idempotency_key or "")
            if existing is None:
                raise
            return _replay(existing, params, name)
        enqueue(self.producer, session, run)
        return run, True

    def submit_study(self, session: Session, request: StudyRequest) -> Study:
        """Expand the study, admit all its runs, commit them, then send their messages."""
        seed = request.params.seed
        first_seed = seed if seed is not None else random.randint(0, INT32_MAX)
        if request.search is not None:
            return self._submit_search(session, request, request.search, first_seed)
        configs, runs = expand(request, first_seed, self.settings.max_study_runs)
        self.admit(session, [params for _, params in runs])
        study, rows = create_study(
            session, request.name, request.base(), request.design(), request.varied(),
            configs, runs, first_seed, request.seeds, self.producer.conf.task_default_queue,
        )  # fmt: skip
        session.commit()
        self._send_all(session, rows)
        return study

    def _submit_search(
        self, session: Session, request: StudyRequest, spec: SearchSpec, first_seed: int
    ) -> Study:
        """Check the search, admit its first trials, commit them, then send their messages (the
        rest are asked for by the workers as slots free)."""
        base = request.base()
        check_request(spec, base, self.settings.max_study_runs)
        try:  # every corner of the space must be a valid run (its compute, its values)
            corners = [run_params(base, corner, first_seed) for corner in space_corners(spec)]
        except ValidationError as exc:
            fields = {f"search.space.{k}": v for k, v in field_errors(exc).items()}
            raise InvalidParams.for_fields(
                "the space holds runs that are not valid", fields
            ) from exc
        self.admit(session, corners[:1])
        for params in corners:
            check_cost(params, self.settings.max_job_tflop)
        queue = self.producer.conf.task_default_queue
        study, rows = create_search(session, request.name, base, spec, first_seed, queue)
        session.commit()
        self._send_all(session, rows)
        return study

    def add_replicates(self, session: Session, study: Study, seeds: int) -> list[Run]:
        """Add `seeds` replicates to every configuration of the study and queue them."""
        runs = replicate_params(study, seeds)
        existing = len(study_runs(session, study.id))
        if existing + len(runs) > self.settings.max_study_runs:
            raise Conflict(
                f"the study has {existing} runs; {len(runs)} more would take it over "
                f"{self.settings.max_study_runs} (TRAINYARD_MAX_STUDY_RUNS)",
                {"seeds": "too many replicates for this study"},
            )
        self.admit(session, [params for _, params in runs])
        rows = add_replicates(session, study, runs, seeds, self.producer.conf.task_default_queue)
        session.commit()
        self._send_all(session, rows)
        return rows

    def _send_all(self, session: Session, runs: list[Run]) -> None:
        """Send each committed run's message; if the broker goes down, fail the unsent ones."""
        for number, run in enumerate(runs):
            try:
                enqueue(self.producer, session, run)
            except BrokerUnavailable:
                for unsent in runs[number + 1 :]:
                    fail_unsent(session, unsent.id, "could not enqueue: the broker is unreachable")
                session.commit()
                raise


def _replay(run: Run, params: Hyperparams, name: str | None) -> tuple[Run, bool]:
    asked = params.model_dump(exclude_unset=True)
    if not _matches(run, asked, name):
        raise Conflict(
            "this Idempotency-Key was used for a different request",
            {"Idempotency-Key": "reused with different parameters"},
        )
    return run, False
