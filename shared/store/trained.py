"""A succeeded run's network, read from its stored `.keras` file and kept per process.

The `.keras` file is a zip: `config.json` names the layers, `model.weights.h5` holds their
weights (`layers/dense/vars/0` the first Dense layer's kernel, `vars/1` its bias, then
`dense_1`...). Reading them needs zipfile and
h5py, not Keras, so the web tier stays free of TensorFlow.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections import OrderedDict
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.domain.digits import Layer, Network
from shared.domain.errors import Conflict, NotFound
from shared.domain.status import RunStatus
from shared.store.models import Run, TrainedModel

# Networks kept in each process, at most this many bytes of weights (a run of 128 hidden units
# holds 0.4 MB; the widest allowed, 4096, holds 13 MB). The newest is kept whatever its size.
CACHE_BYTES = 256 * 1024 * 1024


class _Networks:
    """A least-recently-used cache of networks, bounded by their bytes; safe across threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[str, int, datetime], Network] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, int, datetime]) -> Network | None:
        with self.lock:
            network = self.entries.get(key)
            if network is not None:
                self.entries.move_to_end(key)
            return network

    def put(self, key: tuple[str, int, datetime], network: Network) -> None:
        with self.lock:
            self.entries[key] = network
            self.entries.move_to_end(key)
            while len(self.entries) > 1 and self.held() > self.max_bytes:
                self.entries.popitem(last=False)

    def held(self) -> int:
        return sum(network.nbytes for network in self.entries.values())

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


networks = _Networks(CACHE_BYTES)


def network_from_keras(keras_file: bytes) -> Network:
    """The scaling and Dense layers of a run's `.keras` file (Dropout is a no-op at inference)."""
    # Imported here: h5py takes 0.15 s to load, which a web process pays at its first prediction,
    # not at start-up.
    import h5py

    with zipfile.ZipFile(io.BytesIO(keras_file)) as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
    scale, offset = 1.0, 0.0
    dense: list[tuple[str, bool]] = []
    for layer in config["config"]["layers"]:
        kind, options = layer["class_name"], layer["config"]
        if kind == "Rescaling":
            scale, offset = float(options["scale"]), float(options["offset"])
        elif kind == "Dense":
            activation = options["activation"]
            if activation not in ("relu", "linear"):
                raise ValueError(f"a Dense layer with activation {activation!r} is not supported")
            # The weights file names a model's layers by kind, whatever their own names:
            # dense, dense_1, dense_2...
            path = f"dense_{len(dense)}" if dense else "dense"
            dense.append((path, activation == "relu"))
        elif kind not in ("InputLayer", "Flatten", "Dropout"):
            raise ValueError(f"a {kind} layer is not supported")
    with h5py.File(io.BytesIO(weights), "r") as h5:
        layers = tuple(
            Layer(
                kernel=np.asarray(h5[f"layers/{name}/vars/0"], dtype=np.float32),
                bias=np.asarray(h5[f"layers/{name}/vars/1"], dtype=np.float32),
                relu=relu,
            )
            for name, relu in dense
        )
    return Network(scale=scale, offset=offset, layers=layers)


def run_network(session: Session, run_id: int) -> Network:
    """The network of a succeeded run, read once per process; 404 for no such run, 409 for a run
    without a model.

    The cache key holds the database and the model's save time besides the run id, so a database
    that was emptied and reuses ids never serves another run's weights.
    """
    row: Any = session.execute(
        select(Run.status, TrainedModel.saved_at)
        .outerjoin(TrainedModel, TrainedModel.run_id == Run.id)
        .where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"run {run_id} does not exist", {"id": "no such run"})
    status, saved_at = row
    if status != RunStatus.SUCCEEDED or saved_at is None:
        raise Conflict(
            f"run {run_id} cannot predict: it is {RunStatus(status).value}",
            {"status": "predictions need a succeeded run's model"},
        )
    database = session.get_bind().engine.url.render_as_string(hide_password=True)
    key = (database, run_id, saved_at)
    network = networks.get(key)
    if network is None:
        stored = session.get(TrainedModel, run_id)
        assert stored is not None
        network = network_from_keras(stored.keras_file)
        networks.put(key, network)
    return network
