"""The relevance tower: DeepFM over the spec's fields. The only part of the model that is served.

logit = bias + Σ first-order terms + FM(field embeddings) + DNN(categorical embeddings ⊕ numbers).
Every number and every dimension of a vector is its own FM field; declared crosses are fields too.
In the `position-feature` baseline (Rules of ML #36) position and device are two more fields; at
inference they are absent and replaced by fixed values (position 1, unknown device).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from ranker.features import spec as fs
from ranker.models import inputs
from ranker.models.config import ModelConfig

SERVING_POSITION = 1  # the fixed position the position-feature baseline is scored at
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def factorization_machine_from_sums(fm_sum: tf.Tensor, fm_square: tf.Tensor) -> tf.Tensor:
    """The same FM term from Σ e `[..., k]` and Σ |e|² `[...]` over all fields."""
    return 0.5 * (tf.reduce_sum(tf.square(fm_sum), axis=-1) - fm_square)


def factorization_machine(embeddings: tf.Tensor) -> tf.Tensor:
    """Second-order FM term over fields `[..., fields, k]`: Σ_{i<j} <v_i, v_j>, vectorised."""
    sum_then_square = tf.square(tf.reduce_sum(embeddings, axis=-2))
    square_then_sum = tf.reduce_sum(tf.square(embeddings), axis=-2)
    return 0.5 * tf.reduce_sum(sum_then_square - square_then_sum, axis=-1)


class RelevanceTower(tf.keras.layers.Layer):
    """DeepFM: features dict (`[b]` context, `[b, l]` item tensors) → relevance logits `[b, l]`."""

    def __init__(self, spec: fs.FeatureSpec, embedding_dim: int, hidden_units, moments: dict,
                 position_buckets: int = 0, device_vocabulary: list[str] | None = None,
                 numeric_transform: str = _DEFAULTS["numeric_transform"],
                 dnn_dropout: float = _DEFAULTS["dnn_dropout"], dnn_norm: str = _DEFAULTS["dnn_norm"],
                 cross_l2: float = 0.0, **kwargs):
        super().__init__(name="relevance_tower", **kwargs)
        self.spec = spec
        # cross_l2: the crosses' L2 rate per weight² on the per-item mean loss (config: ÷ training items)
        self.fields = inputs.build_fields(spec, embedding_dim, moments, numeric_transform, cross_l2)
        self.position_field = (inputs.IntegerField(fs.POSITION, embedding_dim, position_buckets)
                               if position_buckets else None)
        self.device_field = (inputs.CategoricalField(fs.DEVICE, embedding_dim, device_vocabulary)
                             if device_vocabulary is not None else None)
        layers = [tf.keras.layers.LayerNormalization()] if dnn_norm == "layer" else []
        for units in hidden_units:
            layers.append(tf.keras.layers.Dense(units, activation="relu"))
            if dnn_dropout:
                layers.append(tf.keras.layers.Dropout(dnn_dropout))
        self.dnn = tf.keras.Sequential(layers + [tf.keras.layers.Dense(1)], name="dnn")
        self.global_bias = self.add_weight(name="global_bias", shape=[], initializer="zeros")

    @classmethod
    def for_config(cls, spec: fs.FeatureSpec, config: ModelConfig, **kwargs) -> "RelevanceTower":
        """The tower a ModelConfig describes (`kwargs`: position_buckets, device_vocabulary)."""
        return cls(spec, config.embedding_dim, config.hidden_units, config.moments,
                   numeric_transform=config.numeric_transform, dnn_dropout=config.dnn_dropout,
                   dnn_norm=config.dnn_norm, cross_l2=config.cross_l2 / max(config.train_items, 1),
                   **kwargs)

    def _field_inputs(self, features: dict, list_size: tf.Tensor, batch: tf.Tensor):
        for feature in self.spec.features:
            item_rank = 3 if feature.kind == fs.VECTOR else 2
            value = inputs.broadcast_to_list(features[feature.name], list_size, item_rank)
            yield self.fields[feature.name], value
        for cross in self.spec.crosses:
            if cross.name in features:  # its ids, from inputs.Encoder
                yield self.fields[cross.name], features[cross.name]
            else:
                yield self.fields[cross.name], [inputs.broadcast_to_list(features[name], list_size, 2)
                                                for name in cross.features]
        if self.position_field is not None:
            default = tf.fill([batch, list_size], tf.constant(SERVING_POSITION, tf.int64))
            yield self.position_field, features.get(fs.POSITION, default)
        if self.device_field is not None:
            device = features.get(fs.DEVICE, tf.fill([batch], ""))
            yield self.device_field, inputs.broadcast_to_list(device, list_size, 2)

    def call(self, features: dict, training=None) -> tf.Tensor:
        shape = tf.shape(self._any_item_tensor(features))
        batch, list_size = shape[0], shape[1]
        outputs = [field(value) for field, value in self._field_inputs(features, list_size, batch)]
        fm = factorization_machine_from_sums(tf.add_n([o.fm_sum for o in outputs]),
                                             tf.add_n([o.fm_square for o in outputs]))
        dnn_input = tf.concat([o.dnn_input for o in outputs], axis=-1)
        deep = tf.squeeze(self.dnn(dnn_input, training=training), -1)
        return self.global_bias + tf.add_n([o.first_order for o in outputs]) + fm + deep

    def _any_item_tensor(self, features: dict) -> tf.Tensor:
        """The `[b, l]` reference shape: an item feature (or, without any, the list mask)."""
        for feature in self.spec.item:
            return features[feature.name]
        return features[fs.MASK]
