"""MNIST loading: the real IDX files, their checks, and the verified download into a cache."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.config import Settings
from shared.domain.errors import DatasetError
from tests.support.machine import mnist_dir
from worker.training.data import FILES, load_mnist, locate_mnist, parse_idx


def idx_images(count: int, rows: int = 28, cols: int = 28, magic: int = 2051) -> bytes:
    header = b"".join(n.to_bytes(4, "big") for n in (magic, count, rows, cols))
    return header + bytes(count * rows * cols)


def idx_labels(labels: list[int], magic: int = 2049) -> bytes:
    return magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big") + bytes(labels)


def test_the_shared_copy_is_the_canonical_mnist() -> None:
    data = load_mnist(mnist_dir())
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.train_labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(data.test_labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert len(data.sha256) == 64


def test_parse_idx_reads_images_and_labels() -> None:
    assert parse_idx(idx_images(3), "x").shape == (3, 28, 28)
    assert parse_idx(idx_labels([1, 2, 9]), "y").tolist() == [1, 2, 9]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "too short"),
        (idx_images(2, magic=1234), "magic number 1234"),
        (idx_images(2, rows=32, cols=32), "32x32"),
        (idx_images(2)[:-5], "header declares"),
        (idx_labels([1, 2])[:-1], "header declares"),
    ],
)
def test_parse_idx_rejects_malformed_files(raw: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_idx(raw, "file")


def _fake_mnist(folder: Path, train_labels: list[int] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "train_images": idx_images(60000),
        "train_labels": idx_labels(train_labels or [0] * 60000),
        "test_images": idx_images(10000),
        "test_labels": idx_labels([0] * 10000),
    }
    for key, stem in FILES.items():
        (folder / stem).write_bytes(contents[key])  # uncompressed files are read too


def test_a_label_outside_0_to_9_is_rejected(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, train_labels=[0] * 59999 + [11])
    with pytest.raises(DatasetError, match="outside 0-9"):
        load_mnist(tmp_path)


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="TRAINYARD_DATA_DIR"):
        load_mnist(tmp_path)


def test_swapped_files_are_rejected(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    (tmp_path / FILES["test_labels"]).write_bytes(idx_images(10000))
    with pytest.raises(DatasetError, match="swapped or malformed"):
        load_mnist(tmp_path)


def test_download_into_the_cache_verifies_checksums(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home", data_dir=None, mnist_mirror=mnist_dir().as_uri() + "/"
    )
    folder = locate_mnist(settings)
    assert folder == settings.mnist_cache_dir
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{stem}.gz" for stem in FILES.values()
    )
    assert load_mnist(folder).sha256 == load_mnist(mnist_dir()).sha256


def test_a_corrupt_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in FILES.values():
        shutil.copy(mnist_dir() / f"{stem}.gz", mirror / f"{stem}.gz")
    with gzip.open(mirror / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(idx_images(60000))  # right shape, wrong pixels
    settings = Settings(home=tmp_path / "home", data_dir=None, mnist_mirror=mirror.as_uri() + "/")
    with pytest.raises(DatasetError, match="fails its checksum"):
        locate_mnist(settings)
    assert not (settings.mnist_cache_dir / "train-images-idx3-ubyte.gz").exists()


def test_offline_without_a_data_dir_says_what_to_set(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, data_dir=None, allow_download=False)
    with pytest.raises(DatasetError, match="TRAINYARD_DATA_DIR"):
        locate_mnist(settings)
    unreachable = Settings(home=tmp_path, data_dir=None, mnist_mirror="http://127.0.0.1:9/")
    with pytest.raises(DatasetError, match=r"cannot download MNIST.*TRAINYARD_DATA_DIR"):
        locate_mnist(unreachable)
