"""A finished run's evaluation, from a real worker: the matrix adds up and the pictures are right."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.domain.status import RunStatus
from shared.store.models import Evaluation
from tests.support.app import submit_run
from tests.support.machine import mnist_dir
from tests.support.pages import decode_png, find
from tests.support.waiting import until_finished

TEST_IMAGES = 10_000


def read_idx(folder: Path, stem: str, header: int) -> bytes:
    """The payload of one MNIST IDX file (gzipped or not), read without the worker's code."""
    plain = folder / stem
    raw = (
        plain.read_bytes()
        if plain.exists()
        else gzip.decompress((folder / f"{stem}.gz").read_bytes())
    )
    return raw[header:]


def test_confusion_matrix_adds_up_to_the_test_accuracy(
    settings: Settings, worker: Settings, client: FlaskClient, session: Session
) -> None:
    run_id = submit_run(client, "evaluation", train_samples=2000, epochs=1, seed=11)
    [run] = until_finished(session, run_id, timeout=180)
    assert run.status == RunStatus.SUCCEEDED, run.error
    evaluation = session.get(Evaluation, run_id)
    assert evaluation is not None
    matrix = evaluation.confusion_matrix
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == TEST_IMAGES
    trace = sum(matrix[i][i] for i in range(10))
    assert trace / TEST_IMAGES == run.test_accuracy
    for digit, row in enumerate(matrix):
        assert evaluation.per_class_accuracy[digit] == round(row[digit] / sum(row), 6)

    # Each misclassified digit is that test image, with its true label, predicted otherwise.
    images = read_idx(mnist_dir(), "t10k-images-idx3-ubyte", 16)
    labels = read_idx(mnist_dir(), "t10k-labels-idx1-ubyte", 8)
    wrong = evaluation.misclassified
    assert 0 < len(wrong) <= 36  # 2,000 images and one epoch leave plenty of mistakes
    for item in wrong:
        index = item["index"]
        assert base64.b64decode(item["image"]) == images[784 * index : 784 * (index + 1)]
        assert item["label"] == labels[index] != item["predicted"]
        assert matrix[item["label"]][item["predicted"]] >= 1

    # The run page shows the same matrix and the same pictures.
    html = client.get(f"/runs/{run_id}").get_data(as_text=True)
    cells = [c for c in find(html, "td") if "data-count" in c["attrs"]]
    assert [int(c["attrs"]["data-count"]) for c in cells] == [n for row in matrix for n in row]
    pictures = [e for e in find(html, "img") if e["attrs"]["src"].startswith("data:image/png")]
    assert len(pictures) == len(wrong)
    for picture, item in zip(pictures, wrong, strict=True):
        png = base64.b64decode(picture["attrs"]["src"].split(",", 1)[1])
        assert decode_png(png) == (28, 28, base64.b64decode(item["image"]))
