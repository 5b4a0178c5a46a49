"""The `ips` variant: the naive relevance tower trained on clicks with inverse-propensity weights.

Unbiased pointwise loss (Saito et al. 2020): binary cross-entropy with labels c / p(k, d), each
weight 1 / p clipped at `ips_clip`; with `--loss listwise` the softmax loss with labels c · w
(as in ULTRA's IPW). The propensities are constants of the model, stored in model_config.json
(`propensities`, `propensity_source`): the examination ratio relative to position 1 per device,
from the data dir's truth.json or a `--propensities` JSON file {device: [p1, p2, …]}. They never
reach the served graph. The click model used for early stopping and click metrics is
p(click) = σ(r) · p(k, d).
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from ranker import storage
from ranker.artifacts import TRUTH_FILE, read_json
from ranker.errors import RankerError
from ranker.models import combine, counterfactual
from ranker.models.counterfactual import HARVESTED, TRUTH


def _curves(raw, source: str) -> dict[str, list[float]]:
    if not isinstance(raw, dict) or not raw:
        raise RankerError(f"{source}: propensities must be a JSON object {{device: [p1, p2, …]}}")
    curves = {}
    for device, curve in raw.items():
        if (not isinstance(curve, list) or not curve
                or not all(isinstance(v, (int, float)) and v > 0 for v in curve)):
            raise RankerError(f"{source}: the curve of {device!r} must be a list of positive numbers")
        curves[str(device)] = [float(v) / float(curve[0]) for v in curve]  # relative to position 1
    return curves


def load_propensities(data_dir: str, path: str | None = None) -> tuple[dict[str, list[float]], str]:
    """({device: [1.0, p2, …]}, source) from `path`: a JSON file, `harvested` (the data dir's
    model-free estimate written by preprocess) or `truth`; by default the data dir's truth.json."""
    if path == HARVESTED:
        chosen = counterfactual.propensities(data_dir, HARVESTED)
        return chosen["curves"], chosen["source"]
    if path and path != TRUTH:
        if not storage.isfile(path):
            raise RankerError(f"--propensities {path}: no such file")
        try:
            return _curves(json.loads(storage.read_bytes(path)), path), storage.absolute(path)
        except ValueError as err:
            raise RankerError(f"--propensities {path}: not valid JSON ({err})") from None
    truth_path = os.path.join(data_dir, TRUTH_FILE)
    truth = read_json(truth_path)
    if truth is None:
        raise RankerError(f"ips needs propensities: {data_dir} has no {TRUTH_FILE}; give --propensities PATH")
    raw = truth.get("propensity")
    if raw is None:
        raise RankerError(f"{truth_path} has no position propensity (e.g. cascade clicks);"
                          " give --propensities PATH")
    return _curves(raw, truth_path), TRUTH_FILE


def propensity_table(propensities: dict, devices: list[str], num_positions: int) -> np.ndarray:
    """`[len(devices) + 1, num_positions + 1]`, indexed like the bias tower (device id 0: out of
    vocabulary, the devices' mean curve; position 0: unknown, 1.0; past a curve: its last value)."""
    missing = [d for d in devices if d not in propensities]
    if missing:
        raise RankerError(f"the propensities have no curve for device(s) {missing}")

    def row(curve):
        values = [curve[min(k, len(curve)) - 1] for k in range(1, num_positions + 1)]
        return [1.0] + values

    rows = [row(propensities[d]) for d in devices]
    return np.array([np.mean(rows, axis=0).tolist()] + rows, np.float32)


class KnownPropensity(tf.keras.layers.Layer):
    """(position `[b, l]`, device `[b]`) → log p(k, d) from a constant table; no weights."""

    def __init__(self, propensities: dict, devices: list[str], num_positions: int, **kwargs):
        super().__init__(name="known_propensity", trainable=False, **kwargs)
        self.num_positions = num_positions
        self.log_table = tf.constant(np.log(propensity_table(propensities, devices, num_positions)))
        self.device_ids = tf.keras.layers.StringLookup(vocabulary=devices, num_oov_indices=1)

    def call(self, position: tf.Tensor, device: tf.Tensor) -> tf.Tensor:
        positions = tf.clip_by_value(tf.cast(position, tf.int32), 0, self.num_positions)
        devices = tf.cast(self.device_ids(device), tf.int32)[:, None] + tf.zeros_like(positions)
        return tf.gather_nd(self.log_table, tf.stack([devices, positions], axis=-1))


def ips_weights(log_propensity: tf.Tensor, clip: float) -> tf.Tensor:
    """min(1 / p, clip)."""
    return tf.minimum(tf.exp(-log_propensity), clip)


def ips_loss(clicks: tf.Tensor, mask: tf.Tensor, relevance: tf.Tensor, log_propensity: tf.Tensor,
             clip: float, loss: str) -> tf.Tensor:
    """Pointwise: BCE of σ(relevance) with labels c · w; listwise: softmax loss with labels c · w."""
    labels = clicks * ips_weights(log_propensity, clip)
    if loss == "listwise":
        return combine.listwise_loss(labels, relevance, mask)
    return combine.pointwise_loss(labels, tf.math.log_sigmoid(relevance), tf.math.log_sigmoid(-relevance), mask)
