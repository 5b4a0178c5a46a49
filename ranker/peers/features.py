"""`preprocess` output → one row per shown candidate, as gradient-boosted trees take it.

Numeric features stay as they are, a vector gives one column per dimension, a categorical becomes
an integer code: its index in the data folder's vocabulary (0 = out of vocabulary), or for a hashed
categorical the model's own stable hash (Keras `Hashing`, FarmHash), so trees and the two-tower
model see the same ids. Context features are repeated on every candidate of their list. Position
and device are not features: the debiasing arms get position separately.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from ranker import tfr
from ranker.features import spec as fs
from ranker.models import inputs
from ranker.peers import records

BATCH_SIZE = 512  # lists per parsed batch


@dataclasses.dataclass
class Table:
    """Candidates of a split: lists contiguous, in data.dataset's order, each in displayed order."""

    x: np.ndarray  # [rows, columns] float32
    columns: list[str]
    categorical: list[int]  # indices of the columns holding integer codes
    sizes: np.ndarray  # candidates per list
    positions: np.ndarray  # [rows] int, 1 = top
    clicked: np.ndarray  # [rows] 0/1 (-1 in judged lists)
    relevance: np.ndarray  # [rows] graded truth (-1 where absent)
    request_ids: list[str]

    @property
    def num_lists(self) -> int:
        return len(self.sizes)


def _encoder(spec: fs.FeatureSpec, feature: fs.Feature):
    if feature.hash_buckets:
        return tf.keras.layers.Hashing(num_bins=feature.hash_buckets)
    return tf.keras.layers.StringLookup(vocabulary=inputs.vocabulary(spec, feature),
                                        num_oov_indices=1)


def columns_of(spec: fs.FeatureSpec) -> tuple[list[str], list[int]]:
    """Column names (vector dimensions as `name[i]`) and the indices of the categorical ones."""
    names, categorical = [], []
    for f in spec.features:
        if f.kind == fs.CATEGORICAL:
            categorical.append(len(names))
        vector = f.kind == fs.VECTOR
        names.extend([f"{f.name}[{i}]" for i in range(f.length)] if vector else [f.name])
    return names, categorical


def _batch_rows(batch: dict, spec: fs.FeatureSpec, encoders: dict) -> np.ndarray:
    mask = batch[fs.MASK].numpy()
    blocks = []
    for f in spec.features:
        value = batch[f.name]
        if f.kind == fs.CATEGORICAL:
            value = encoders[f.name](value)
        value = value.numpy().astype(np.float32)
        if f.scope == fs.CONTEXT:
            value = np.broadcast_to(value[:, None], mask.shape + value.shape[1:])
        blocks.append(value[mask].reshape(int(mask.sum()), -1))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((int(mask.sum()), 0), np.float32)


def table(data_dir: str, split: str, spec: fs.FeatureSpec, list_size: int) -> Table:
    """Every candidate of a split, encoded with `spec`'s vocabularies (the training data's, so a
    model trained on one folder can score another).

    One pass over the serialized lists: each batch is parsed by the package's ELWC parser (the one
    data.dataset maps) and its request ids are read from the same records, so they cannot drift.
    """
    encoders = {f.name: _encoder(spec, f) for f in spec.features if f.kind == fs.CATEGORICAL}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "sizes", "pos", "clk", "rel")}
    request_ids: list[str] = []
    for serialized in records.serialized_batches(data_dir, split, BATCH_SIZE):
        batch = tfr.parse_elwc_batch(tf.constant(serialized), spec, list_size)
        mask = batch[fs.MASK].numpy()
        parts["x"].append(_batch_rows(batch, spec, encoders))
        parts["sizes"].append(mask.sum(axis=1))
        parts["pos"].append(batch[fs.POSITION].numpy()[mask])
        parts["clk"].append(batch[fs.CLICKED].numpy()[mask])
        parts["rel"].append(batch[fs.RELEVANCE].numpy()[mask])
        request_ids.extend(records.request_id(record) for record in serialized)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    names, categorical = columns_of(spec)
    return Table(x=cat["x"], columns=names, categorical=categorical,
                 sizes=cat["sizes"].astype(np.int64), positions=cat["pos"].astype(np.int64),
                 clicked=cat["clk"].astype(np.int64), relevance=cat["rel"].astype(np.float64),
                 request_ids=request_ids)


def padded(values: np.ndarray, sizes: np.ndarray, fill: float) -> np.ndarray:
    """Row values of contiguous lists → `[lists, longest]` with `fill` in the padded slots."""
    out = np.full((len(sizes), int(sizes.max(initial=0))), fill, dtype=np.float64)
    out[np.arange(out.shape[1])[None, :] < sizes[:, None]] = values
    return out
