"""Raw features → DeepFM fields, all derived from the feature spec.

Every field yields three things for a `[batch, list]` of candidates: a field embedding `[b, l, k]`
(the FM's and the DNN's shared input), a first-order term `[b, l]` and dense inputs `[b, l, d]`
(numerics and vectors also reach the DNN as values). Vocabularies and normalisation moments are
constants of the layers, so the served graph takes raw strings and raw numbers.
"""
from __future__ import annotations

import os

import tensorflow as tf

from ranker.errors import RankerError
from ranker.features import spec as fs


def vocabulary(spec: fs.FeatureSpec, feature) -> list[str]:
    path = spec.vocabulary_path(feature)
    if not os.path.exists(path):
        name = feature if isinstance(feature, str) else feature.name
        raise RankerError(f"vocabulary of {name!r} not found at {path}; run `ranker preprocess` first")
    return fs.read_vocabulary(path) or [""]


def broadcast_to_list(value: tf.Tensor, list_size: tf.Tensor, item_rank: int) -> tf.Tensor:
    """A context tensor `[b]` (or `[b, n]` for vectors) repeated for each of the list's candidates.

    Already per-candidate tensors (rank `item_rank`, as in serving) pass through unchanged.
    """
    if value.shape.rank == item_rank:
        return value
    expanded = tf.expand_dims(value, 1)
    multiples = tf.concat([[1, list_size], tf.ones([item_rank - 2], tf.int32)], axis=0)
    return tf.tile(expanded, multiples)


class CategoricalField(tf.keras.layers.Layer):
    """Vocabulary lookup (one OOV id) or hashing, then an embedding and a first-order weight."""

    def __init__(self, name: str, embedding_dim: int, vocabulary: list[str] | None = None,
                 hash_buckets: int | None = None, **kwargs):
        super().__init__(name=f"field_{name}", **kwargs)
        if vocabulary is not None:
            self.to_id = tf.keras.layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1)
            size = len(vocabulary) + 1
        else:
            self.to_id = tf.keras.layers.Hashing(num_bins=hash_buckets)
            size = hash_buckets
        self.embedding = tf.keras.layers.Embedding(size, embedding_dim)
        self.weight = tf.keras.layers.Embedding(size, 1, embeddings_initializer="zeros")

    def call(self, value):
        ids = self.to_id(value)
        return self.embedding(ids), tf.squeeze(self.weight(ids), -1), None


class IntegerField(CategoricalField):
    """Small non-negative integers (positions) as categories; values past the table share the last."""

    def __init__(self, name: str, embedding_dim: int, num_buckets: int, **kwargs):
        super().__init__(name, embedding_dim, hash_buckets=num_buckets + 1, **kwargs)
        self.to_id = lambda value: tf.clip_by_value(tf.cast(value, tf.int32), 0, num_buckets)


class NumericField(tf.keras.layers.Layer):
    """A standardised number: scales a learned field vector (FM), a weight, and a DNN input."""

    def __init__(self, name: str, embedding_dim: int, mean: float = 0.0, std: float = 1.0, **kwargs):
        super().__init__(name=f"field_{name}", **kwargs)
        self.mean, self.std = float(mean), float(std) or 1.0
        self.vector = self.add_weight(name="vector", shape=[embedding_dim],
                                      initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        self.weight = self.add_weight(name="weight", shape=[], initializer="zeros")

    def call(self, value):
        x = (tf.cast(value, tf.float32) - self.mean) / self.std
        return x[..., None] * self.vector, self.weight * x, x[..., None]


class VectorField(tf.keras.layers.Layer):
    """A fixed-length vector: projected to a field embedding (FM), a linear term, and DNN inputs."""

    def __init__(self, name: str, embedding_dim: int, length: int, mean=None, std=None, **kwargs):
        super().__init__(name=f"field_{name}", **kwargs)
        self.mean = tf.constant(mean if mean is not None else [0.0] * length, tf.float32)
        safe_std = [s if s > 0 else 1.0 for s in (std if std is not None else [1.0] * length)]
        self.std = tf.constant(safe_std, tf.float32)
        self.project = tf.keras.layers.Dense(embedding_dim, use_bias=False)
        self.linear = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")

    def call(self, value):
        x = (tf.cast(value, tf.float32) - self.mean) / self.std
        return self.project(x), tf.squeeze(self.linear(x), -1), x


def build_fields(spec: fs.FeatureSpec, embedding_dim: int, moments: dict) -> dict[str, tf.keras.layers.Layer]:
    """One field layer per declared feature (context and item), keyed by feature name."""
    fields = {}
    for feature in spec.features:
        dim = embedding_dim  # one size for all fields: the FM takes dot products between them
        stats = moments.get(feature.name, {})
        if feature.kind == fs.CATEGORICAL:
            vocab = None if feature.hash_buckets else vocabulary(spec, feature)
            fields[feature.name] = CategoricalField(feature.name, dim, vocab, feature.hash_buckets)
        elif feature.kind == fs.NUMERIC:
            fields[feature.name] = NumericField(feature.name, dim, stats.get("mean", 0.0),
                                                stats.get("std", 1.0))
        else:
            fields[feature.name] = VectorField(feature.name, dim, feature.length, stats.get("mean"),
                                               stats.get("std"))
    return fields
