"""ExampleListWithContext (ELWC) records from validated impressions.

An impression here is the validated, normalised form of one log line (see `parse.py`):

    {"request_id": str, "position": int, "device_type": str, "item_id": str,
     "clicked": 0 | 1 | None, "relevance": float | None, "timestamp": int | None,
     "context": {name: value}, "features": {name: value}}

Context (request features, device, request id) goes into the ELWC context; one tf.Example per shown
item carries its features, position and labels. Values stay raw: strings as bytes, numbers as floats.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import input_pb2

from ranker.features import spec as fs


def _bytes(value) -> feature_pb2.Feature:
    text = value if isinstance(value, str) else str(value)
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[text.encode("utf-8")]))


def _floats(values: Sequence[float]) -> feature_pb2.Feature:
    return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))


def _int(value: int) -> feature_pb2.Feature:
    return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(value)]))


def encode_feature(feature: fs.Feature, value) -> feature_pb2.Feature:
    """One declared feature's value as a tf.train.Feature (raw, no vocabulary applied)."""
    if feature.kind == fs.CATEGORICAL:
        return _bytes(value)
    if feature.kind == fs.NUMERIC:
        return _floats([float(value)])
    return _floats([float(v) for v in value])


def _put_features(target, features: Iterable[fs.Feature], values: dict) -> None:
    for feature in features:
        if values.get(feature.name) is not None:
            target[feature.name].CopyFrom(encode_feature(feature, values[feature.name]))


def context_example(impression: dict, spec: fs.FeatureSpec) -> example_pb2.Example:
    context = example_pb2.Example()
    fmap = context.features.feature
    fmap[fs.REQUEST_ID].CopyFrom(_bytes(impression[fs.REQUEST_ID]))
    fmap[fs.DEVICE].CopyFrom(_bytes(impression[fs.DEVICE]))
    _put_features(fmap, spec.context, impression.get("context") or {})
    return context


def item_example(impression: dict, spec: fs.FeatureSpec) -> example_pb2.Example:
    example = example_pb2.Example()
    fmap = example.features.feature
    fmap[fs.ITEM_ID].CopyFrom(_bytes(impression[fs.ITEM_ID]))
    fmap[fs.POSITION].CopyFrom(_int(impression[fs.POSITION]))
    if impression.get(fs.CLICKED) is not None:
        fmap[fs.CLICKED].CopyFrom(_int(impression[fs.CLICKED]))
    if impression.get(fs.RELEVANCE) is not None:
        fmap[fs.RELEVANCE].CopyFrom(_floats([float(impression[fs.RELEVANCE])]))
    _put_features(fmap, spec.item, impression.get("features") or {})
    return example


def build_elwc(impressions: Sequence[dict], spec: fs.FeatureSpec) -> input_pb2.ExampleListWithContext:
    """One served list: context from its first impression, examples ordered by position."""
    ordered = sorted(impressions, key=lambda imp: imp[fs.POSITION])
    elwc = input_pb2.ExampleListWithContext()
    elwc.context.CopyFrom(context_example(ordered[0], spec))
    for impression in ordered:
        elwc.examples.add().CopyFrom(item_example(impression, spec))
    return elwc


def serving_example(candidate: dict, context: dict, spec: fs.FeatureSpec) -> example_pb2.Example:
    """The tf.Example TF Serving receives per candidate: item features plus request context."""
    example = example_pb2.Example()
    fmap = example.features.feature
    _put_features(fmap, spec.item, candidate)
    _put_features(fmap, spec.context, context)
    return example
