"""Predictions through the API from a run trained here (real TensorFlow, a small slice of MNIST):
equal to Keras' own on the downloaded model, the run's test accuracy over the test set, drawings
prepared as MNIST was made, every bad input refused by name, and no TensorFlow in the web tier."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.params import Hyperparams
from shared.domain.status import RunStatus
from tests.builders import make_run
from tests.support.app import client_for
from tests.support.machine import ROOT, mnist_dir
from worker.training.data import Mnist, load_mnist


@dataclass(frozen=True)
class Trained:
    """A run trained in this process: its parameters, model file and recorded test figures."""

    params: dict[str, Any]
    keras_file: bytes
    test_loss: float
    test_accuracy: float


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    from worker.training.runtime import init_tensorflow

    init_tensorflow(2)
    return load_mnist(mnist_dir())


def train(mnist: Mnist, **overrides: Any) -> Trained:
    from worker.training.model import Job

    params = {"epochs": 2, "train_samples": 2000, "seed": 11, **overrides}
    job = Job(Hyperparams(**params), mnist)
    assert job.train_epochs(lambda _: None)
    loss, accuracy, _ = job.evaluate()
    return Trained(params, job.keras_file(), loss, accuracy)


@pytest.fixture(scope="module")
def trained(mnist: Mnist) -> Trained:
    return train(mnist)


def stored(session: Session, trained: Trained) -> int:
    """The trained run as a succeeded run of the test's database; its id."""
    run = make_run(
        session,
        status=RunStatus.SUCCEEDED,
        epochs_done=trained.params["epochs"],
        test_loss=trained.test_loss,
        test_accuracy=trained.test_accuracy,
        keras_file=trained.keras_file,
        **trained.params,
    )
    return run.id


def predict(client: FlaskClient, run_id: int, images: np.ndarray) -> list[dict[str, Any]]:
    response = client.post(f"/api/runs/{run_id}/predict", json={"inputs": images.tolist()})
    assert response.status_code == 200, response.get_json()
    return list(response.get_json()["predictions"])


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("normalize", [True, False])
def test_predictions_equal_keras_on_the_downloaded_model(
    mnist: Mnist,
    trained: Trained,
    client: FlaskClient,
    session: Session,
    tmp_path: Path,
    normalize: bool,
) -> None:
    import keras

    run = trained if normalize else train(mnist, normalize=False, hidden_units=48)
    # Each test empties the database, so both cases store their model as run 1 on SQLite: the
    # second passes only because the process's cache does not key the weights by run id alone.
    run_id = stored(session, run)
    path = tmp_path / "run.keras"
    path.write_bytes(client.get(f"/api/runs/{run_id}/model").data)
    model = keras.models.load_model(path)
    images = mnist.test_images[:300]
    expected = keras.ops.softmax(model.predict(images.astype(np.float32), verbose=0)).numpy()
    # Flat 784 and nested 28x28 are the same images.
    for sent in (images.reshape(-1, 784), images):
        answers = predict(client, run_id, sent)
        got = np.array([a["probabilities"] for a in answers])
        assert np.abs(got - expected).max() <= 1e-5
        assert [a["label"] for a in answers] == expected.argmax(axis=1).tolist()
    # A batch may mix both forms.
    mixed = [images[0].reshape(-1).tolist(), images[1].tolist()]
    response = client.post(f"/api/runs/{run_id}/predict", json={"inputs": mixed})
    got = np.array([a["probabilities"] for a in response.get_json()["predictions"]])
    assert np.abs(got - expected[:2]).max() <= 1e-5


def test_the_test_set_through_the_api_gives_the_recorded_accuracy(
    mnist: Mnist, trained: Trained, client: FlaskClient, session: Session
) -> None:
    run_id = stored(session, trained)
    correct = 0
    for start in range(0, 10_000, 1000):
        answers = predict(client, run_id, mnist.test_images[start : start + 1000])
        labels = np.array([a["label"] for a in answers])
        correct += int((labels == mnist.test_labels[start : start + 1000]).sum())
    recorded = round(trained.test_accuracy * 10_000)
    assert abs(correct - recorded) <= 2, (correct, recorded)


def drawing_of(digit: np.ndarray, index: int) -> bytes:
    """A test digit as someone's drawing: dark ink on white paper, 4x larger, off-centre.

    Enlarged pixel by pixel: a smooth enlargement of a 28x28 digit invents a different one (a
    weakly trained model then disagrees on one digit in 25, however it is prepared)."""
    ink = Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.NEAREST)
    paper = Image.new("L", (240, 180), 255)
    paper.paste(ink, (10 + (index * 37) % 110, 5 + (index * 23) % 60))
    return png(paper.convert("RGB"))


def test_enlarged_shifted_drawings_are_classified_as_their_originals(
    mnist: Mnist, trained: Trained, client: FlaskClient, session: Session
) -> None:
    run_id = stored(session, trained)
    count = 300
    originals = [a["label"] for a in predict(client, run_id, mnist.test_images[:count])]
    agreed = 0
    for index in range(count):
        response = client.post(
            f"/api/runs/{run_id}/predict",
            data=drawing_of(mnist.test_images[index], index),
            content_type="image/png",
        )
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        agreed += answer["predictions"][0]["label"] == originals[index]
        seen = np.array(answer["pixels"], dtype=np.uint8).reshape(28, 28)
        assert answer["image"].startswith("data:image/png;base64,")
        # What the model saw is as MNIST's digits are: white on black, fitted to 20x20, its centre
        # of mass at the centre.
        rows, cols = np.flatnonzero(seen.max(axis=1)), np.flatnonzero(seen.max(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21)  # + LANCZOS's fringe
        mass = seen / seen.sum()
        centre = (mass.sum(axis=1) @ np.arange(28), mass.sum(axis=0) @ np.arange(28))
        assert np.abs(np.array(centre) - 14).max() <= 1.0, centre
    assert agreed / count >= 0.97, agreed


def test_a_canvas_png_with_transparent_paper_is_read_as_ink_on_paper(
    trained: Trained, client: FlaskClient, session: Session, mnist: Mnist
) -> None:
    """A browser canvas that was never filled: black strokes on transparent pixels."""
    run_id = stored(session, trained)
    digit = mnist.test_images[0]
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 3] = digit  # the ink is where the canvas is opaque
    drawing = Image.fromarray(rgba, mode="RGBA").resize((280, 280), Image.Resampling.BILINEAR)
    response = client.post(
        f"/api/runs/{run_id}/predict", data=png(drawing), content_type="image/png"
    )
    assert response.status_code == 200, response.get_json()
    original = predict(client, run_id, digit[None])[0]["label"]
    assert response.get_json()["predictions"][0]["label"] == original


GOOD = [[0] * 784]


def blank_png(width: int, height: int) -> bytes:
    return png(Image.new("L", (width, height), 255))


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ({"inputs": [[0] * 783]}, None, 422, "inputs.0"),
        ({"inputs": [[0] * 784, [[0] * 28] * 27]}, None, 422, "inputs.1"),
        ({"inputs": [[[0] * 28] * 5 + [[0] * 27] + [[0] * 28] * 22]}, None, 422, "inputs.0.5"),
        ({"inputs": [[0] * 784, [[0] * 28] * 5 + [[0] * 3 + [256] + [0] * 24] + [[0] * 28] * 22]},
         None, 422, "inputs.1.5.3"),
        ({"inputs": [[0] * 17 + [-1] + [0] * 766]}, None, 422, "inputs.0.17"),
        ({"inputs": [[0] * 17 + ["7"] + [0] * 766]}, None, 422, "inputs.0.17"),
        ({"inputs": [[0] * 17 + [True] + [0] * 766]}, None, 422, "inputs.0.17"),
        ({"inputs": [[0] * 17 + [None] + [0] * 766]}, None, 422, "inputs.0.17"),
        ({"inputs": [[0] * 17 + [10**40] + [0] * 766]}, None, 422, "inputs.0.17"),
        ({"inputs": []}, None, 422, "inputs"),
        ({"inputs": GOOD, "extra": 1}, None, 422, "extra"),
        ({}, None, 422, "inputs"),
        ({"inputs": GOOD * 1001}, None, 413, "inputs"),
        (b"GIF89a not a png", "image/png", 415, "body"),
        (b"\x89PNG\r\n\x1a\n broken", "image/png", 422, "body"),
        (blank_png(300, 200), "image/png", 422, "image"),
        (blank_png(2500, 2000), "image/png", 413, "body"),
        (b"0,0,0", "text/csv", 415, "Content-Type"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_what_and_where(
    trained: Trained,
    client: FlaskClient,
    session: Session,
    body: Any,
    content_type: str | None,
    status: int,
    field: str,
) -> None:
    run_id = stored(session, trained)
    url = f"/api/runs/{run_id}/predict"
    if content_type is None:
        response = client.post(url, data=json.dumps(body), content_type="application/json")
    else:
        response = client.post(url, data=body, content_type=content_type)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert field in error["fields"], error
    assert field in error["message"] or status == 413 or field == "Content-Type", error


def test_only_a_succeeded_run_predicts(client: FlaskClient, session: Session) -> None:
    for status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED):
        run = make_run(session, status=status)
        response = client.post(f"/api/runs/{run.id}/predict", json={"inputs": GOOD})
        assert response.status_code == 409, response.get_json()
        assert status.value in response.get_json()["error"]["message"]
    assert client.post("/api/runs/999999/predict", json={"inputs": GOOD}).status_code == 404


def test_a_body_over_the_prediction_limit_is_refused(
    trained: Trained, settings: Settings, session: Session
) -> None:
    run_id = stored(session, trained)
    client = client_for(settings.with_overrides(predict_max_body_bytes=20_000))
    response = client.post(f"/api/runs/{run_id}/predict", json={"inputs": GOOD * 10})
    assert response.status_code == 413
    assert "20000" in response.get_json()["error"]["fields"]["body"]
    # A body over the other writes' 64 KiB but within the prediction limit is taken.
    response = client_for(settings).post(
        f"/api/runs/{run_id}/predict", json={"inputs": [[255] * 784] * 100}
    )
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 100


def test_predictions_follow_the_read_token_rule(
    trained: Trained, settings: Settings, session: Session
) -> None:
    run_id = stored(session, trained)
    url = f"/api/runs/{run_id}/predict"
    open_reads = client_for(settings.with_overrides(api_token="t0ken"))
    assert open_reads.post(url, json={"inputs": GOOD}).status_code == 200
    private = client_for(settings.with_overrides(api_token="t0ken", private=True))
    assert private.post(url, json={"inputs": GOOD}).status_code == 401
    signed = {"Authorization": "Bearer t0ken"}
    assert private.post(url, json={"inputs": GOOD}, headers=signed).status_code == 200
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    assert open_reads.post(url, json={"inputs": GOOD}, headers=cross_site).status_code == 403


def test_the_web_process_never_loads_tensorflow(
    trained: Trained, settings: Settings, session: Session, mnist: Mnist
) -> None:
    run_id = stored(session, trained)
    drawing = drawing_of(mnist.test_images[0], 0)
    script = textwrap.dedent(
        f"""
        import sys
        from shared.config import Settings
        from web import create_app
        app = create_app(Settings.from_env())
        client = app.test_client()
        answer = client.post("/api/runs/{run_id}/predict", data=sys.stdin.buffer.read(),
                             content_type="image/png")
        assert answer.status_code == 200, answer.get_json()
        app.extensions["trainyard.store"].close()
        app.extensions["trainyard.dispatcher"].producer.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(answer.get_json()["predictions"][0]["label"], loaded)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=drawing,
        capture_output=True,
        cwd=ROOT,
        env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    label, loaded = done.stdout.decode().strip().split(" ", 1)
    assert loaded == "[]"
    assert int(label) == predict_label_in_process(trained, mnist)


def predict_label_in_process(trained: Trained, mnist: Mnist) -> int:
    """The same drawing's label, predicted here with the numpy pass (the subprocess agrees)."""
    from shared.domain.digits import mnist_style
    from shared.read.predictions import decode_png
    from shared.store.trained import network_from_keras

    seen = mnist_style(decode_png(drawing_of(mnist.test_images[0], 0)))
    network = network_from_keras(trained.keras_file)
    return int(network.probabilities(seen.reshape(1, 784).astype(np.float32)).argmax())


def test_the_pad_is_on_a_succeeded_run_s_page_and_on_the_compare_page(
    trained: Trained, client: FlaskClient, session: Session
) -> None:
    """Scripts only from static files (the CSP allows no inline script); the pad is hidden until
    the run has a model (static/pad.js shows it when the run page learns it succeeded)."""
    done = stored(session, trained)
    queued = make_run(session).id
    html = client.get(f"/runs/{done}").get_data(as_text=True)
    assert f'data-url="/api/runs/{done}/predict" data-ready="true"' in html
    assert '<section class="pad" id="try-it" data-follow="model-link" >' in html
    assert '<script src="/static/pad.js">' in html
    html = client.get(f"/runs/{queued}").get_data(as_text=True)
    assert 'data-follow="model-link" hidden>' in html
    html = client.get(f"/compare?ids={done},{queued}").get_data(as_text=True)
    assert f'data-url="/api/runs/{done}/predict" data-ready="true"' in html
    assert f'data-url="/api/runs/{queued}/predict" data-ready="false"' in html
    assert "no model: this run is queued" in html
    script = client.get("/static/pad.js")
    assert script.status_code == 200
    script.close()


def test_the_weights_cache_keeps_the_recently_used_within_its_bytes() -> None:
    from datetime import UTC, datetime

    from shared.domain.digits import Layer, Network
    from shared.store.trained import _Networks

    def network(units: int) -> Network:
        kernel = np.zeros((784, units), dtype=np.float32)
        return Network(1.0, 0.0, (Layer(kernel, np.zeros(units, dtype=np.float32), True),))

    size = network(10).nbytes
    cache = _Networks(max_bytes=3 * size)
    keys = [("db", run_id, datetime(2026, 1, 1, tzinfo=UTC)) for run_id in range(5)]
    for key in keys[:3]:
        cache.put(key, network(10))
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], network(10))
    assert cache.get(keys[1]) is None and cache.get(keys[0]) is not None
    cache.put(keys[4], network(1000))  # larger than the bound alone: kept, the rest go
    assert list(cache.entries) == [keys[4]]
