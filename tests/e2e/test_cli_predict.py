"""`trainyard predict` as a subprocess against gunicorn, on a run the real worker trained."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from shared.config import Settings
from shared.store.engine import Store
from tests.builders import make_run
from tests.support.app import client_for, submit_run
from tests.support.machine import mnist_dir
from tests.support.processes import cli_env, run_trainyard
from tests.support.waiting import until_finished


def test_predict_prints_each_drawing_s_label_and_top_probabilities(
    settings: Settings, store: Store, worker: Settings, live_server: str, tmp_path: Path
) -> None:
    from worker.training.data import load_mnist

    client = client_for(settings)
    run_id = submit_run(client, "cli predict", epochs=2, train_samples=6000, seed=4)
    assert until_finished(store, run_id)[0].status.value == "succeeded"
    digits = load_mnist(mnist_dir()).test_images[:2]
    answer = client.post(f"/api/runs/{run_id}/predict", json={"inputs": digits.tolist()})
    expected = [p["label"] for p in answer.get_json()["predictions"]]
    files = []
    for index, digit in enumerate(digits):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(255 - digit).resize((140, 140), Image.Resampling.NEAREST).save(path)
        files.append(str(path))
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    env = cli_env(settings, live_server)

    done = run_trainyard(
        "predict", str(run_id), files[0], str(blank), files[1], "--top", "2", env=env
    )
    assert done.returncode == 1, done.stderr  # the blank one, named; the others answered
    lines = done.stdout.splitlines()
    for line, path, label in zip(lines, files, expected, strict=True):
        assert re.fullmatch(rf"{re.escape(path)}: {label}  \({label} \d+\.\d%, \d \d+\.\d%\)", line)
    assert f"{blank}: HTTP 422: the drawing is empty" in done.stderr

    with store.session_scope() as session:
        queued = make_run(session).id
    done = run_trainyard("predict", str(queued), files[0], env=env)
    assert done.returncode == 1 and "HTTP 409" in done.stderr and done.stdout == ""
