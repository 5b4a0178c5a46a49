"""Parse specs derived from the feature spec: ELWC context/example specs and the serving spec.

Shapes after parsing a batch of ELWCs with TF-Ranking: context features `[batch]` (vectors
`[batch, length]`), example features `[batch, list_size]` (vectors `[batch, list_size, length]`).
Strings stay strings: vocabularies are applied inside the model.
"""
from __future__ import annotations

import tensorflow as tf

from ranker.features import spec as fs
from ranker.features.codec import default_value

_DTYPES = {fs.CATEGORICAL: tf.string, fs.NUMERIC: tf.float32, fs.VECTOR: tf.float32}


def feature_parse_spec(feature: fs.Feature) -> tf.io.FixedLenFeature:
    """A missing feature parses to the codec's default ("" / 0.0 / zeros)."""
    shape = [feature.length] if feature.kind == fs.VECTOR else []
    return tf.io.FixedLenFeature(shape, _DTYPES[feature.kind], default_value=default_value(feature))


def context_parse_spec(spec: fs.FeatureSpec, with_device: bool = True,
                       with_request_id: bool = False) -> dict:
    """Context features of an ELWC: the request's features, (for training) its device and (for
    per-list evaluation) its request id."""
    out = {f.name: feature_parse_spec(f) for f in spec.context}
    if with_device:
        out[fs.DEVICE] = tf.io.FixedLenFeature([], tf.string, default_value="")
    if with_request_id:
        out[fs.REQUEST_ID] = tf.io.FixedLenFeature([], tf.string, default_value="")
    return out


def example_parse_spec(spec: fs.FeatureSpec, with_labels: bool = True,
                       with_position: bool = True) -> dict:
    """Per-candidate features of an ELWC; labels default to the padding label when absent."""
    out = {f.name: feature_parse_spec(f) for f in spec.item}
    if with_position:
        out[fs.POSITION] = tf.io.FixedLenFeature([], tf.int64, default_value=fs.PADDING_POSITION)
    if with_labels:
        pad = fs.PADDING_LABEL
        out[fs.CLICKED] = tf.io.FixedLenFeature([], tf.int64, default_value=int(pad))
        out[fs.RELEVANCE] = tf.io.FixedLenFeature([], tf.float32, default_value=pad)
    return out


def serving_parse_spec(spec: fs.FeatureSpec) -> dict:
    """What one served tf.Example holds: the candidate's item features and its request's context.

    Position and device are deliberately absent: the served model is the relevance tower alone.
    """
    return {f.name: feature_parse_spec(f) for f in spec.features}


def tensor_spec(feature: fs.Feature, list_dims: int) -> tf.TensorSpec:
    """Raw-tensor signature spec: `list_dims` leading None dimensions, plus the vector length."""
    shape = [None] * list_dims + ([feature.length] if feature.kind == fs.VECTOR else [])
    return tf.TensorSpec(shape, _DTYPES[feature.kind], name=feature.name)
