"""The `ips` variant: the naive relevance tower trained on clicks with inverse-propensity weights.

Unbiased pointwise loss (Saito et al. 2020): binary cross-entropy with labels c / p(k, d), each
weight 1 / p clipped at `ips_clip`; with `--loss listwise` the softmax loss with labels c · w
(as in ULTRA's IPW). The propensities are constants of the model, stored in model_config.json
(`propensities`, `propensity_source`): the examination ratio relative to position 1 per device,
from the data dir's truth.json, its harvested estimate or a `--propensities` JSON file. They never
reach the served graph. The click model used for early stopping and click metrics is
p(click) = σ(r) · p(k, d).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ranker.errors import RankerError
from ranker.models import combine, counterfactual
from ranker.models.counterfactual import TRUTH


def load_propensities(data_dir: str, path: str | None = None) -> tuple[dict[str, list[float]], str]:
    """({device: [1.0, p2, …]}, source) from `path`: a JSON file, `harvested` (the data dir's
    model-free estimate written by preprocess) or `truth` (the default: the data dir's truth.json);
    counterfactual.propensities reads and checks them, as for the IPS metrics."""
    chosen = counterfactual.propensities(data_dir, path or TRUTH)
    return chosen["curves"], chosen["source"]


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
