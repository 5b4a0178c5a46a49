"""Requests for the served ranker, REST (`:predict` JSON) and gRPC (`PredictRequest`).

A request is one list: `candidates`, a list of dicts of item features (raw values: strings,
numbers, number lists), and `context`, a dict of the request's context features. Reserved log
fields (item_id, position, device_type, …) may ride along and are ignored: the served model does
not take them. Missing features get the parse defaults ("" / 0.0 / zeros), as in training.

    body = rest_body(candidates, context, spec)            # POST to /v1/models/NAME:predict
    request = grpc_request(candidates, context, spec, "ranker")
    scores = scores_from_grpc(stub.Predict(request, 5.0))

Signatures: `serving_default` (tf.Examples, one per candidate), `score_lists` (raw tensors) and
`score_elwc` (one serialized ExampleListWithContext per list: context once, item features per
candidate). Numbers may be sent as int or float. The protos themselves come from
ranker.features.codec (the Beam job writes training data with the same encoder).
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
# The request encoder is the feature codec's; re-exported as the client's API (client.elwc, …).
from ranker.features.codec import raw_arrays, serialized_examples  # noqa: F401
from ranker.features.codec import request_elwc as elwc
from ranker.serving.signatures import (ELWC_SIGNATURE, ELWCS, EXAMPLES, RAW_SIGNATURE, SCORES,
                                       SERVING_DEFAULT)

SIGNATURES = (SERVING_DEFAULT, RAW_SIGNATURE, ELWC_SIGNATURE)
BINARY_INPUTS = {SERVING_DEFAULT: EXAMPLES, ELWC_SIGNATURE: ELWCS}  # signature → its string input


def _binary_values(candidates, context, spec, signature: str) -> list[bytes]:
    """The string input of serving_default (a tf.Example per candidate) or score_elwc (one ELWC)."""
    if signature == ELWC_SIGNATURE:
        return [elwc(candidates, context, spec).SerializeToString()]
    return serialized_examples(candidates, context, spec)


def _signature(signature: str) -> str:
    if signature not in SIGNATURES:
        raise RankerError(f"unknown signature {signature!r}; choose one of {list(SIGNATURES)}")
    return signature


def rest_body(candidates: Sequence[dict], context: dict, spec: fs.FeatureSpec,
              signature: str = SERVING_DEFAULT, layout: str = "columnar") -> dict:
    """The JSON body of `POST /v1/models/NAME[/versions/V]:predict`.

    serving_default sends base64 serialized tf.Examples (`{"b64": …}`, as TF Serving's REST API
    expects binary strings), score_elwc one base64 ELWC; score_lists sends the raw values.
    `layout`: "columnar" (`inputs`, the answer comes back as `outputs`) or "row" (`instances`,
    answered by `predictions`).
    """
    if layout not in ("columnar", "row"):
        raise RankerError(f"layout must be 'columnar' or 'row', got {layout!r}")
    if _signature(signature) in BINARY_INPUTS:
        values = [{"b64": base64.b64encode(s).decode("ascii")}
                  for s in _binary_values(candidates, context, spec, signature)]
        if layout == "row":
            return {"signature_name": signature, "instances": values}
        return {"signature_name": signature, "inputs": {BINARY_INPUTS[signature]: values}}
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
    if signature in BINARY_INPUTS:
        values = _binary_values(candidates, context, spec, signature)
        request.inputs[BINARY_INPUTS[signature]].CopyFrom(
            tf.make_tensor_proto(np.array(values, dtype=object), dtype=tf.string, shape=[len(values)]))
    else:
        for name, array in raw_arrays(candidates, context, spec).items():
            dtype = tf.string if array.dtype == object else tf.float32
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array, dtype=dtype, shape=array.shape))
    return request


def scores_from_grpc(response) -> np.ndarray:
    """`scores` of a `PredictResponse`: `[N]` (serving_default) or `[lists, N]` (score_lists,
    score_elwc)."""
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
