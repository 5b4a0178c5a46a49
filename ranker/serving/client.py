"""Requests for the served ranker, REST (`:predict` JSON) and gRPC (`PredictRequest`).

A request is one list: `candidates`, a list of dicts of item features (raw values: strings,
numbers, number lists), and `context`, a dict of the request's context features. Reserved log
fields (item_id, position, device_type, …) may ride along and are ignored: the served model does
not take them. Missing features get the parse defaults ("" / 0.0 / zeros), as in training.

    body = rest_body(candidates, context, spec)            # POST to /v1/models/NAME:predict
    request = grpc_request(candidates, context, spec, "ranker")
    scores = scores_from_grpc(stub.Predict(request, 5.0))
"""
from __future__ import annotations

import base64
import json
import urllib.request
from typing import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline.elwc import serving_example
from ranker.serving.signatures import EXAMPLES, RAW_SIGNATURE, SCORES, SERVING_DEFAULT

SIGNATURES = (SERVING_DEFAULT, RAW_SIGNATURE)


def _check(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec) -> None:
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
    _check(candidates, context, spec)
    return [serving_example(c, context, spec).SerializeToString() for c in candidates]


def _default(feature: fs.Feature):
    if feature.kind == fs.CATEGORICAL:
        return ""
    return 0.0 if feature.kind == fs.NUMERIC else [0.0] * feature.length


def raw_arrays(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec) -> dict[str, np.ndarray]:
    """`score_lists` inputs for one list: `[1, N]` arrays (vectors `[1, N, n]`), context repeated."""
    _check(candidates, context, spec)
    out = {}
    for f in spec.features:
        if f.scope == fs.CONTEXT:
            values = [context.get(f.name, _default(f))] * len(candidates)
        else:
            values = [c.get(f.name, _default(f)) for c in candidates]
        values = [_default(f) if v is None else v for v in values]
        if f.kind == fs.CATEGORICAL:
            array = np.array([str(v).encode("utf-8") for v in values], dtype=object)
        else:
            array = np.array(values, dtype=np.float32).reshape([len(values)] + (
                [f.length] if f.kind == fs.VECTOR else []))
        out[f.name] = array[None]
    return out


def _signature(signature: str) -> str:
    if signature not in SIGNATURES:
        raise RankerError(f"unknown signature {signature!r}; choose one of {list(SIGNATURES)}")
    return signature


def rest_body(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec,
              signature: str = SERVING_DEFAULT, layout: str = "columnar") -> dict:
    """The JSON body of `POST /v1/models/NAME[/versions/V]:predict`.

    serving_default sends base64 serialized tf.Examples (`{"b64": …}`, as TF Serving's REST API
    expects binary strings); score_lists sends the raw values. `layout`: "columnar" (`inputs`, the
    answer comes back as `outputs`) or "row" (`instances`, answered by `predictions`).
    """
    if layout not in ("columnar", "row"):
        raise RankerError(f"layout must be 'columnar' or 'row', got {layout!r}")
    if _signature(signature) == SERVING_DEFAULT:
        values = [{"b64": base64.b64encode(s).decode("ascii")}
                  for s in serialized_examples(candidates, context, spec)]
        if layout == "row":
            return {"signature_name": signature, "instances": values}
        return {"signature_name": signature, "inputs": {EXAMPLES: values}}
    arrays = raw_arrays(candidates, context, spec)
    as_json = {name: [[v.decode("utf-8") if isinstance(v, bytes) else v for v in row]
                      for row in a.tolist()] for name, a in arrays.items()}
    if layout == "row":  # one instance per list
        return {"signature_name": signature,
                "instances": [{name: rows[0] for name, rows in as_json.items()}]}
    return {"signature_name": signature, "inputs": as_json}


def grpc_request(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec, model_name: str,
                 signature: str = SERVING_DEFAULT, version: int | None = None) -> predict_pb2.PredictRequest:
    """A `PredictRequest` for `PredictionService.Predict` (also what the warmup file holds)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = _signature(signature)
    if version is not None:
        request.model_spec.version.value = int(version)
    if signature == SERVING_DEFAULT:
        examples = serialized_examples(candidates, context, spec)
        request.inputs[EXAMPLES].CopyFrom(
            tf.make_tensor_proto(np.array(examples, dtype=object), dtype=tf.string, shape=[len(examples)]))
    else:
        for name, array in raw_arrays(candidates, context, spec).items():
            dtype = tf.string if array.dtype == object else tf.float32
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array, dtype=dtype, shape=array.shape))
    return request


def scores_from_grpc(response) -> np.ndarray:
    """`scores` of a `PredictResponse`: `[N]` (serving_default) or `[lists, N]` (score_lists)."""
    return tf.make_ndarray(response.outputs[SCORES])


def scores_from_rest(answer: dict) -> np.ndarray:
    """`scores` of a REST `:predict` answer, columnar (`outputs`) or row (`predictions`)."""
    if "error" in answer:
        raise RankerError(f"TF Serving refused the request: {answer['error']}")
    value = answer.get("outputs", answer.get("predictions"))
    if isinstance(value, dict):
        value = value[SCORES]
    if value is None:
        raise RankerError(f"no outputs/predictions in the answer: {sorted(answer)}")
    return np.asarray(value, dtype=np.float32)


def predict_rest(url: str, body: dict, timeout: float = 10.0) -> np.ndarray:
    """POSTs `body` to `url` (e.g. http://localhost:8501/v1/models/ranker:predict); the scores."""
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return scores_from_rest(json.load(answer))


def predict_grpc(target: str, request: predict_pb2.PredictRequest, timeout: float = 10.0) -> np.ndarray:
    """Sends `request` to `target` (e.g. localhost:8500); the scores."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return scores_from_grpc(stub.Predict(request, timeout))
