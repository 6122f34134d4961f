"""Log lines: text or one JSON object a line, a job's lines naming its run, attempt and worker,
from the job's thread and from a thread it starts in its context."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from shared.ops.logs import JobFilter, add_job_fields, formatter, job_fields


@pytest.fixture(params=["text", "json"])
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO, logging.Logger]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(request.param))
    handler.addFilter(JobFilter())
    logger = logging.getLogger(f"tests.logs.{request.param}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield request.param, out, logger
    logger.removeHandler(handler)


def test_a_jobs_lines_name_its_run_in_either_format(
    captured: tuple[str, io.StringIO, logging.Logger],
) -> None:
    log_format, out, logger = captured
    logger.info("before any job")
    with job_fields(run_id=12, worker="w1@a"):
        add_job_fields(attempt=2)
        logger.info("epoch %d done", 1)
        watch = threading.Thread(
            target=contextvars.copy_context().run, args=(logger.warning, "from the watch")
        )
        watch.start()
        watch.join()
    logger.info("after the job")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert [e["message"] for e in entries] == [
            "before any job",
            "epoch 1 done",
            "from the watch",
            "after the job",
        ]
        for entry in entries[1:3]:
            assert (entry["run_id"], entry["attempt"], entry["worker"]) == (12, 2, "w1@a")
        assert "run_id" not in entries[0] and "run_id" not in entries[3]
        assert entries[2]["level"] == "WARNING"
    else:
        assert "[run 12 attempt 2 on w1@a]: epoch 1 done" in lines[1]
        assert "[run 12 attempt 2 on w1@a]: from the watch" in lines[2]
        assert "[run" not in lines[0] and "[run" not in lines[3]


def test_an_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="TRAINYARD_LOG_FORMAT must be one of text, json"):
        formatter("xml")
