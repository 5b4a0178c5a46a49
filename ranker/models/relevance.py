"""The relevance tower: DeepFM over the spec's fields. The only part of the model that is served.

logit = bias + Σ first-order terms + FM(field embeddings) + DNN(field embeddings ⊕ dense values).
In the `position-feature` baseline (Rules of ML #36) position and device are two more fields; at
inference they are absent and replaced by fixed values (position 1, unknown device).
"""
from __future__ import annotations

import tensorflow as tf

from ranker.features import spec as fs
from ranker.models import inputs

SERVING_POSITION = 1  # the fixed position the position-feature baseline is scored at


def factorization_machine(embeddings: tf.Tensor) -> tf.Tensor:
    """Second-order FM term over fields `[..., fields, k]`: Σ_{i<j} <v_i, v_j>, vectorised."""
    sum_then_square = tf.square(tf.reduce_sum(embeddings, axis=-2))
    square_then_sum = tf.reduce_sum(tf.square(embeddings), axis=-2)
    return 0.5 * tf.reduce_sum(sum_then_square - square_then_sum, axis=-1)


class RelevanceTower(tf.keras.layers.Layer):
    """DeepFM: features dict (`[b]` context, `[b, l]` item tensors) → relevance logits `[b, l]`."""

    def __init__(self, spec: fs.FeatureSpec, embedding_dim: int, hidden_units, moments: dict,
                 position_buckets: int = 0, device_vocabulary: list[str] | None = None, **kwargs):
        super().__init__(name="relevance_tower", **kwargs)
        self.spec = spec
        self.fields = inputs.build_fields(spec, embedding_dim, moments)
        self.position_field = (inputs.IntegerField(fs.POSITION, embedding_dim, position_buckets)
                               if position_buckets else None)
        self.device_field = (inputs.CategoricalField(fs.DEVICE, embedding_dim, device_vocabulary)
                             if device_vocabulary is not None else None)
        self.dnn = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in hidden_units]
            + [tf.keras.layers.Dense(1)], name="dnn")
        self.global_bias = self.add_weight(name="global_bias", shape=[], initializer="zeros")

    def _field_inputs(self, features: dict, list_size: tf.Tensor, batch: tf.Tensor):
        for feature in self.spec.features:
            item_rank = 3 if feature.kind == fs.VECTOR else 2
            value = inputs.broadcast_to_list(features[feature.name], list_size, item_rank)
            yield self.fields[feature.name], value
        if self.position_field is not None:
            default = tf.fill([batch, list_size], tf.constant(SERVING_POSITION, tf.int64))
            yield self.position_field, features.get(fs.POSITION, default)
        if self.device_field is not None:
            device = features.get(fs.DEVICE, tf.fill([batch], ""))
            yield self.device_field, inputs.broadcast_to_list(device, list_size, 2)

    def call(self, features: dict) -> tf.Tensor:
        shape = tf.shape(self._any_item_tensor(features))
        batch, list_size = shape[0], shape[1]
        embeddings, first_order, dense = [], [], []
        for field, value in self._field_inputs(features, list_size, batch):
            embedding, linear, values = field(value)
            embeddings.append(embedding)
            first_order.append(linear)
            if values is not None:
                dense.append(values)
        stacked = tf.stack(embeddings, axis=-2)  # [b, l, fields, k]
        flat = tf.reshape(stacked, tf.concat([shape[:2], [-1]], axis=0))
        flat.set_shape([None, None, len(embeddings) * stacked.shape[-1]])
        dnn_in = tf.concat([flat] + dense, axis=-1)
        deep = tf.squeeze(self.dnn(dnn_in), -1)
        return self.global_bias + tf.add_n(first_order) + factorization_machine(stacked) + deep

    def _any_item_tensor(self, features: dict) -> tf.Tensor:
        """The `[b, l]` reference shape: an item feature (or, without any, the list mask)."""
        for feature in self.spec.item:
            return features[feature.name]
        return features[fs.MASK]
