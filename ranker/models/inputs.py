"""Raw features → DeepFM fields, all derived from the feature spec.

A field layer stands for m FM fields: one per categorical, cross and numeric, one per DIMENSION of
a vector (so the FM interacts every pair of numbers, x_i·x_j·<v_i, v_j>). For a `[batch, list]` of
candidates it yields a FieldOutput: the sum of its m field embeddings `[b, l, k]` and the sum of
their squared norms `[b, l]` (all the FM needs: Σ_{i<j} <e_i, e_j> = ½(|Σ e|² − Σ |e|²); for a
vector, x @ V and x² @ |V|², never the `[b, l, n, k]` embeddings themselves), a first-order term
`[b, l]` and DNN inputs `[b, l, d]`. The DNN reads categorical embeddings but numbers as values:
the embedding x·v of a number is linear in x, so feeding it to the DNN's first (linear) layer
besides x adds nothing but width.

Numbers go through a robust transform (Qin et al. 2021): optionally signed log1p, standardisation
with moments of the transformed training values, clipping to ±CLIP. Vocabularies, moments and the
transform are constants of the layers, so the served graph takes raw strings and raw numbers.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ranker import storage
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models.config import NUMERIC_TRANSFORMS  # noqa: F401 (re-exported)

LOG1P, STANDARD = NUMERIC_TRANSFORMS
CLIP = 5.0  # standardised numbers are clipped to [-CLIP, CLIP]
CROSS_SEPARATOR = "\x1f"  # joins a cross's component strings (ASCII unit separator)


class FieldOutput(NamedTuple):
    fm_sum: tf.Tensor  # Σ of the field embeddings `[b, l, k]`
    fm_square: tf.Tensor  # Σ of their squared norms `[b, l]`
    first_order: tf.Tensor  # `[b, l]`
    dnn_input: tf.Tensor  # `[b, l, d]`


def signed_log1p(x):
    """sign(x)·log1p(|x|), on numpy arrays or tensors."""
    if isinstance(x, np.ndarray):
        return np.sign(x) * np.log1p(np.abs(x))
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def pre_standardise(x, transform: str):
    """The part of a numeric transform before standardisation (its moments are taken after it)."""
    return signed_log1p(x) if transform == LOG1P else x


def transform_moments(moments: dict, name: str, transform: str) -> dict:
    """{"mean", "std"} of a feature's transformed values (see data.feature_moments); {} without any."""
    stats = moments.get(name)
    if not stats or transform == STANDARD:
        return stats or {}
    if transform not in stats:
        raise RankerError(f"moments of {name!r} lack the {transform!r} transform; retrain the model")
    return stats[transform]


def vocabulary(spec: fs.FeatureSpec, feature) -> list[str]:
    path = spec.vocabulary_path(feature)
    if not storage.exists(path):
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


def id_lookup(vocabulary: list[str] | None, hash_buckets: int | None):
    """(strings → ids layer, number of ids): a vocabulary lookup with one OOV id, or hashing."""
    if vocabulary is not None:
        return tf.keras.layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1), len(vocabulary) + 1
    return tf.keras.layers.Hashing(num_bins=hash_buckets), hash_buckets


def feature_vocabulary(spec: fs.FeatureSpec, feature) -> list[str] | None:
    """A categorical feature's vocabulary (None when it is hashed)."""
    return None if feature.hash_buckets else vocabulary(spec, feature)


def cross_ids(components, hasher) -> tf.Tensor:
    """A cross's ids: its components' strings joined by CROSS_SEPARATOR, then hashed."""
    return hasher(tf.strings.join(list(components), separator=CROSS_SEPARATOR))


class CategoricalField(tf.keras.layers.Layer):
    """Vocabulary lookup (one OOV id) or hashing, then an embedding and a first-order weight."""

    def __init__(self, name: str, embedding_dim: int, vocabulary: list[str] | None = None,
                 hash_buckets: int | None = None, l2: float = 0.0, **kwargs):
        super().__init__(name=f"field_{name}", **kwargs)
        self.to_id, size = id_lookup(vocabulary, hash_buckets)
        regularizer = tf.keras.regularizers.L2(l2) if l2 else None
        self.embedding = tf.keras.layers.Embedding(size, embedding_dim, embeddings_regularizer=regularizer)
        self.weight = tf.keras.layers.Embedding(size, 1, embeddings_initializer="zeros",
                                                embeddings_regularizer=regularizer)

    def call(self, value):
        """Raw strings, or the ids `Encoder` already turned them into (int tensors)."""
        return self.from_ids(self.to_id(value) if value.dtype == tf.string else value)

    def from_ids(self, ids):
        embedding = self.embedding(ids)
        return FieldOutput(embedding, tf.reduce_sum(tf.square(embedding), -1),
                           tf.squeeze(self.weight(ids), -1), embedding)


class IntegerField(CategoricalField):
    """Small non-negative integers (positions) as categories; values past the table share the last."""

    def __init__(self, name: str, embedding_dim: int, num_buckets: int, **kwargs):
        super().__init__(name, embedding_dim, hash_buckets=num_buckets + 1, **kwargs)
        self.to_id = lambda value: tf.clip_by_value(tf.cast(value, tf.int32), 0, num_buckets)

    def call(self, value):
        return self.from_ids(self.to_id(value))


class CrossField(CategoricalField):
    """A hashed cross: the components' raw strings joined by CROSS_SEPARATOR (so ("a", "bc") and
    ("ab", "c") differ, and so do swapped components), hashed into an embedding and a weight."""

    def __init__(self, cross: fs.Cross, embedding_dim: int, l2: float = 0.0, **kwargs):
        super().__init__(cross.name, embedding_dim, hash_buckets=cross.hash_buckets, l2=l2, **kwargs)

    def call(self, components):
        """The components' raw `[b, l]` strings, or the ids `Encoder` hashed them to."""
        if isinstance(components, tf.Tensor):
            return self.from_ids(components)
        return self.from_ids(self.ids(components))

    def ids(self, components) -> tf.Tensor:
        """The hashed id of each joined tuple (what Encoder precomputes)."""
        return cross_ids(components, self.to_id)


class VectorField(tf.keras.layers.Layer):
    """A fixed-length vector `[b, l, n]`: one FM field per dimension, x_i·v_i with V `[n, k]`, a
    first-order weight per dimension, and the transformed values as DNN inputs."""

    def __init__(self, name: str, embedding_dim: int, length: int, mean=None, std=None,
                 transform: str = LOG1P, **kwargs):
        super().__init__(name=f"field_{name}", **kwargs)
        self.transform = transform
        self.mean = tf.constant(np.broadcast_to(0.0 if mean is None else mean, [length]), tf.float32)
        std = np.broadcast_to(1.0 if std is None else std, [length]).astype(np.float64)
        self.std = tf.constant(np.where(std > 0, std, 1.0), tf.float32)
        self.vectors = self.add_weight(name="vectors", shape=[length, embedding_dim],
                                       initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        self.linear = self.add_weight(name="weights", shape=[length], initializer="zeros")

    def standardised(self, value) -> tf.Tensor:
        x = pre_standardise(tf.cast(value, tf.float32), self.transform)
        return tf.clip_by_value((x - self.mean) / self.std, -CLIP, CLIP)

    def embeddings(self, value) -> tf.Tensor:
        """The n field embeddings x_i·v_i `[b, l, n, k]` (call uses only their sums)."""
        return self.standardised(value)[..., None] * self.vectors

    def call(self, value):
        x = self.standardised(value)
        squared_norms = tf.reduce_sum(tf.square(self.vectors), -1)
        return FieldOutput(tf.tensordot(x, self.vectors, 1), tf.tensordot(tf.square(x), squared_norms, 1),
                           tf.tensordot(x, self.linear, 1), x)


class NumericField(VectorField):
    """A single number `[b, l]`: a vector field of length 1."""

    def __init__(self, name: str, embedding_dim: int, mean: float = 0.0, std: float = 1.0,
                 transform: str = LOG1P, **kwargs):
        super().__init__(name, embedding_dim, 1, mean, std, transform, **kwargs)

    def call(self, value):
        return super().call(tf.expand_dims(value, -1))


def build_fields(spec: fs.FeatureSpec, embedding_dim: int, moments: dict,
                 transform: str = LOG1P, cross_l2: float = 0.0) -> dict[str, tf.keras.layers.Layer]:
    """One field layer per declared feature (context and item) and per cross, keyed by name; the
    crosses' tables get an L2 penalty of rate `cross_l2`."""
    fields = {}
    for feature in spec.features:
        dim = embedding_dim  # one size for all fields: the FM takes dot products between them
        stats = transform_moments(moments, feature.name, transform)
        if feature.kind == fs.CATEGORICAL:
            fields[feature.name] = CategoricalField(feature.name, dim, feature_vocabulary(spec, feature),
                                                    feature.hash_buckets)
        elif feature.kind == fs.NUMERIC:
            fields[feature.name] = NumericField(feature.name, dim, stats.get("mean", 0.0),
                                                stats.get("std", 1.0), transform)
        else:
            fields[feature.name] = VectorField(feature.name, dim, feature.length, stats.get("mean"),
                                               stats.get("std"), transform)
    for cross in spec.crosses:
        fields[cross.name] = CrossField(cross, embedding_dim, cross_l2)
    return fields


class Encoder:
    """Parsed batch → the same batch with every categorical feature's strings replaced by the ids
    the relevance tower's fields look up, and each cross's hashed ids added under the cross's name
    (names are one namespace with the features). `train` maps it over its input before caching, so
    the lookups and hashing run once per list, not once per epoch; the tower takes raw strings as
    well (serving, evaluation) and gives the same ids for them."""

    def __init__(self, spec: fs.FeatureSpec):
        self.spec = spec
        self.lookups = {f.name: id_lookup(feature_vocabulary(spec, f), f.hash_buckets)[0]
                        for f in spec.features if f.kind == fs.CATEGORICAL}
        self.hashers = {c.name: id_lookup(None, c.hash_buckets)[0] for c in spec.crosses}

    def __call__(self, batch: dict) -> dict:
        out = dict(batch)
        list_size = tf.shape(batch[fs.MASK])[1]
        for cross in self.spec.crosses:
            components = [broadcast_to_list(batch[name], list_size, 2) for name in cross.features]
            out[cross.name] = cross_ids(components, self.hashers[cross.name])
        for name, lookup in self.lookups.items():
            out[name] = lookup(batch[name])
        return out
