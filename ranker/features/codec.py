"""The tf.Example / ELWC codec: impressions and requests → protos, and protos back to raw values.

Written by the Beam job (`build_elwc`: one ExampleListWithContext per served list), by the serving
client, export checks and warmup (`serialized_examples`, `request_elwc`, `raw_arrays`: what the
three signatures take) and read back by warmup (`decode_features`). Parsing into tensors is
tensors.py's; the parse defaults both share are `default_value`'s.

An impression is the validated, normalised form of one log line (ranker.pipeline.parse):

    {"request_id": str, "position": int, "device_type": str, "item_id": str,
     "clicked": 0 | 1 | None, "relevance": float | None, "timestamp": int | None,
     "context": {name: value}, "features": {name: value}}

Context (request features, device, request id) goes into the ELWC context; one tf.Example per shown
item carries its features, position and labels. Values stay raw: strings as bytes, numbers as floats.
A request is one list: `candidates` (dicts of item features) and `context` (the request's context
features); reserved log fields may ride along and are ignored.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import input_pb2

from ranker.errors import RankerError
from ranker.features import spec as fs


def default_value(feature: fs.Feature):
    """What a missing feature parses to: "" / 0.0 / zeros (training and serving alike)."""
    if feature.kind == fs.CATEGORICAL:
        return ""
    return 0.0 if feature.kind == fs.NUMERIC else [0.0] * feature.length


# --- encoding ------------------------------------------------------------------------------------

def _put_bytes(feature: feature_pb2.Feature, value) -> None:
    text = value if isinstance(value, str) else str(value)
    feature.bytes_list.value.append(text.encode("utf-8"))


def put_feature(target: feature_pb2.Feature, feature: fs.Feature, value) -> None:
    """Writes one declared feature's raw value into `target` in place (no vocabulary applied).

    In place, not via a new Feature and CopyFrom: this is the Beam job's hot path (about 2.5×).
    """
    if feature.kind == fs.CATEGORICAL:
        _put_bytes(target, value)
    elif feature.kind == fs.NUMERIC:
        target.float_list.value.append(float(value))
    else:
        target.float_list.value.extend([float(v) for v in value])


def _put_features(target, features: Iterable[fs.Feature], values: dict) -> None:
    for feature in features:
        if values.get(feature.name) is not None:
            put_feature(target[feature.name], feature, values[feature.name])


def _fill_context(context: example_pb2.Example, impression: dict, spec: fs.FeatureSpec) -> None:
    fmap = context.features.feature
    _put_bytes(fmap[fs.REQUEST_ID], impression[fs.REQUEST_ID])
    _put_bytes(fmap[fs.DEVICE], impression[fs.DEVICE])
    _put_features(fmap, spec.context, impression.get("context") or {})


def _fill_item(example: example_pb2.Example, impression: dict, spec: fs.FeatureSpec) -> None:
    fmap = example.features.feature
    _put_bytes(fmap[fs.ITEM_ID], impression[fs.ITEM_ID])
    fmap[fs.POSITION].int64_list.value.append(int(impression[fs.POSITION]))
    if impression.get(fs.CLICKED) is not None:
        fmap[fs.CLICKED].int64_list.value.append(int(impression[fs.CLICKED]))
    if impression.get(fs.RELEVANCE) is not None:
        fmap[fs.RELEVANCE].float_list.value.append(float(impression[fs.RELEVANCE]))
    _put_features(fmap, spec.item, impression.get("features") or {})


def build_elwc(impressions: Sequence[dict], spec: fs.FeatureSpec) -> input_pb2.ExampleListWithContext:
    """One served list: context from its first impression, examples ordered by position."""
    ordered = sorted(impressions, key=lambda imp: imp[fs.POSITION])
    elwc = input_pb2.ExampleListWithContext()
    _fill_context(elwc.context, ordered[0], spec)
    for impression in ordered:
        _fill_item(elwc.examples.add(), impression, spec)
    return elwc


def serving_example(candidate: dict, context: dict, spec: fs.FeatureSpec) -> example_pb2.Example:
    """The tf.Example TF Serving receives per candidate: item features plus request context."""
    example = example_pb2.Example()
    fmap = example.features.feature
    _put_features(fmap, spec.item, candidate)
    _put_features(fmap, spec.context, context)
    return example


# --- requests: the inputs of the served signatures ----------------------------------------------

def check_request(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec) -> None:
    """RankerError for a feature the spec does not declare or a vector of the wrong length."""
    item, ctx = set(fs.names(spec.item)), set(fs.names(spec.context))
    for where, values, allowed in [("context", context, ctx)] + [
            (f"candidate {i}", c, item) for i, c in enumerate(candidates)]:
        unknown = set(values) - allowed - fs.RESERVED
        if unknown:
            raise RankerError(f"{where}: {sorted(unknown)} are not {'context' if allowed is ctx else 'item'}"
                              f" features of the spec (expected some of {sorted(allowed)})")
        for name, value in values.items():
            if name in allowed and spec.feature(name).kind == fs.VECTOR and value is not None:
                if len(value) != spec.feature(name).length:
                    raise RankerError(f"{where}: {name!r} needs {spec.feature(name).length} numbers,"
                                      f" got {len(value)}")


def serialized_examples(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec) -> list[bytes]:
    """One serialized tf.Example per candidate (item features + the request's context)."""
    check_request(candidates, context, spec)
    return [serving_example(c, context, spec).SerializeToString() for c in candidates]


def request_elwc(candidates: Sequence[dict], context: dict,
                 spec: fs.FeatureSpec) -> input_pb2.ExampleListWithContext:
    """One list as an ELWC: context features once, one tf.Example of item features per candidate."""
    check_request(candidates, context, spec)
    out = input_pb2.ExampleListWithContext()
    out.context.CopyFrom(serving_example({}, context, spec))
    for candidate in candidates:
        out.examples.add().CopyFrom(serving_example(candidate, {}, spec))
    return out


def raw_arrays(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec) -> dict[str, np.ndarray]:
    """`score_lists` inputs for one list: `[1, N]` arrays (vectors `[1, N, n]`), context repeated."""
    check_request(candidates, context, spec)
    out = {}
    for f in spec.features:
        if f.scope == fs.CONTEXT:
            values = [context.get(f.name, default_value(f))] * len(candidates)
        else:
            values = [c.get(f.name, default_value(f)) for c in candidates]
        values = [default_value(f) if v is None else v for v in values]
        if f.kind == fs.CATEGORICAL:
            array = np.array([str(v).encode("utf-8") for v in values], dtype=object)
        else:
            array = np.array(values, dtype=np.float32).reshape([len(values)] + (
                [f.length] if f.kind == fs.VECTOR else []))
        out[f.name] = array[None]
    return out


# --- decoding ------------------------------------------------------------------------------------

def decode_feature(feature: fs.Feature, proto: feature_pb2.Feature):
    """A tf.train.Feature back to the raw value `put_feature` encodes (None when empty)."""
    if feature.kind == fs.CATEGORICAL:
        values = proto.bytes_list.value
        return values[0].decode("utf-8", "replace") if values else None
    values = list(proto.float_list.value)
    if feature.kind == fs.NUMERIC:
        return values[0] if values else None
    return values if len(values) == feature.length else None


def decode_features(features: Iterable[fs.Feature], proto_map) -> dict:
    """{name: raw value} of the declared `features` present in a tf.Example's feature map."""
    out = {}
    for feature in features:
        if feature.name in proto_map:
            value = decode_feature(feature, proto_map[feature.name])
            if value is not None:
                out[feature.name] = value
    return out
