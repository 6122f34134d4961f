"""A client generated from /api/openapi.json by openapi-python-client works against a live server:
the document is usable by real tools, with operations named and grouped for people."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from shared.config import Settings

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


def test_a_generated_client_submits_lists_shows_and_cancels(
    settings: Settings, live_server: str, tmp_path: Path
) -> None:
    document = tmp_path / "openapi.json"
    with urllib.request.urlopen(f"{live_server}/api/openapi.json", timeout=10) as response:
        document.write_bytes(response.read())
    package = tmp_path / "trainyard_client"
    generated = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--output-path", str(package),
         "--meta", "none"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # Operations grouped by tag, named by operationId: `runs.submit_run`, not `default.api_create`.
    assert {p.name for p in (package / "api").iterdir() if p.is_dir()} >= {
        "runs", "studies", "cluster", "meta"
    }  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:

        def load(module: str) -> Any:
            return importlib.import_module(f"trainyard_client.{module}")

        with load("client").Client(base_url=live_server, raise_on_unexpected_status=True) as client:
            models = load("models")
            submit_run, list_runs = load("api.runs.submit_run"), load("api.runs.list_runs")
            get_run, get_run_metrics = load("api.runs.get_run"), load("api.runs.get_run_metrics")
            cancel_run = load("api.runs.cancel_run")

            body = models.SubmitRequest(
                name="generated client",
                params=models.Hyperparams(epochs=30, train_samples=60000, seed=3, normalize=False),
            )
            created = submit_run.sync(client=client, body=body)
            assert created.name == "generated client" and created.status.value in (
                "queued",
                "running",
            )
            listed = list_runs.sync(
                client=client, q="generated", normalize=False, sort=list_runs.ListRunsSort.ID_DESC
            )
            assert [run.id for run in listed.runs] == [created.id] and listed.total == 1
            shown = get_run.sync(client=client, run_id=created.id)
            assert shown.params.epochs == 30 and shown.params.seed == 3
            metrics = get_run_metrics.sync(client=client, run_id=created.id)
            assert metrics.run_id == created.id
            cancelled = cancel_run.sync(
                client=client, run_id=created.id, body=models.EmptyRequest()
            )
            assert cancelled.cancel_requested
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("trainyard_client")]:
            del sys.modules[name]
