"""MNIST from its four IDX files: read, checked, and downloaded into a cache where allowed."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.config import Settings
from shared.domain.errors import DatasetError

logger = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
EXPECTED_COUNTS = {"train": 60000, "test": 10000}
# MD5 of the uncompressed image files: the canonical MNIST, whatever gzip produced the download.
CANONICAL_IMAGE_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "test_images": "2646ac647ad5339dbf082846283269ea",
}


@dataclass(frozen=True)
class Mnist:
    """The four arrays, uint8 images (N, 28, 28) and labels (N,), and a checksum of their bytes."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    sha256: str


def _read_bytes(folder: Path, stem: str) -> bytes:
    for candidate, opener in ((folder / f"{stem}.gz", gzip.open), (folder / stem, open)):
        if candidate.exists():
            try:
                with opener(candidate, "rb") as handle:
                    return handle.read()
            except OSError as exc:
                raise DatasetError(f"cannot read {candidate}: {exc}") from exc
    raise DatasetError(
        f"{stem}(.gz) is missing from {folder}; set TRAINYARD_DATA_DIR to a folder holding the "
        "four MNIST IDX files"
    )


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Parse one IDX file (images or labels), checking its magic number and declared shape."""
    if len(raw) < 8:
        raise DatasetError(f"{name}: too short to be an IDX file")
    magic = int.from_bytes(raw[0:4], "big")
    count = int.from_bytes(raw[4:8], "big")
    if magic == IMAGES_MAGIC:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (28, 28):
            raise DatasetError(f"{name}: images are {rows}x{cols}, expected 28x28")
        body, shape = raw[16:], (count, rows, cols)  # type: tuple[bytes, tuple[int, ...]]
    elif magic == LABELS_MAGIC:
        body, shape = raw[8:], (count,)
    else:
        raise DatasetError(
            f"{name}: magic number {magic} is neither images (2051) nor labels (2049)"
        )
    expected = int(np.prod(shape))
    if len(body) != expected:
        raise DatasetError(f"{name}: {len(body)} bytes of data, header declares {expected}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_mnist(folder: Path) -> Mnist:
    """Read and check the four IDX files in `folder`."""
    digest = hashlib.sha256()
    arrays: dict[str, np.ndarray] = {}
    for key, stem in FILES.items():
        raw = _read_bytes(folder, stem)
        digest.update(raw)
        arrays[key] = parse_idx(raw, stem)
    for split, count in EXPECTED_COUNTS.items():
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DatasetError(f"{split}: image and label files are swapped or malformed")
        if len(images) != count or len(labels) != count:
            raise DatasetError(
                f"{split}: {len(images)} images and {len(labels)} labels, expected {count} of each"
            )
        if labels.max() > 9:
            raise DatasetError(f"{split}: a label is {int(labels.max())}, outside 0-9")
    return Mnist(sha256=digest.hexdigest(), **arrays)


def download_mnist(cache: Path, mirror: str) -> Path:
    """Download the four files into `cache` (once), verifying the canonical image checksums."""
    cache.mkdir(parents=True, exist_ok=True)
    for key, stem in FILES.items():
        target = cache / f"{stem}.gz"
        if target.exists():
            continue
        partial = target.with_suffix(".part")
        logger.info("downloading %s from %s", stem, mirror)
        try:
            with (
                urllib.request.urlopen(f"{mirror}{stem}.gz", timeout=60) as response,
                partial.open("wb") as handle,
            ):
                shutil.copyfileobj(response, handle)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise DatasetError(
                f"cannot download MNIST from {mirror} ({exc}); set TRAINYARD_DATA_DIR to a folder "
                "holding the four IDX files"
            ) from exc
        if key in CANONICAL_IMAGE_MD5:
            with gzip.open(partial, "rb") as handle:
                md5 = hashlib.md5(handle.read()).hexdigest()
            if md5 != CANONICAL_IMAGE_MD5[key]:
                partial.unlink()
                raise DatasetError(f"{stem} from {mirror} fails its checksum (md5 {md5})")
        partial.rename(target)
    return cache


def locate_mnist(settings: Settings) -> Path:
    """Return the folder to read MNIST from: TRAINYARD_DATA_DIR, else a verified download cache."""
    if settings.data_dir is not None:
        if not settings.data_dir.is_dir():
            raise DatasetError(f"TRAINYARD_DATA_DIR={settings.data_dir} is not a directory")
        return settings.data_dir
    if not settings.allow_download:
        raise DatasetError(
            "TRAINYARD_DATA_DIR is not set and downloads are off (TRAINYARD_ALLOW_DOWNLOAD=0); "
            "point TRAINYARD_DATA_DIR at the four MNIST IDX files"
        )
    return download_mnist(settings.mnist_cache_dir, settings.mnist_mirror)
