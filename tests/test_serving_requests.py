"""Serving requests: REST and gRPC bodies, int-or-float numbers, the ELWC signature, bad input.

Shares the session's trained and exported good model (serving_helpers) with test_serving.py.
"""
from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import keras_scores, served, shared_export, shared_model_dir
from tensorflow_serving.apis import input_pb2, predict_pb2

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.serving import client, export, publish


@pytest.fixture(scope="module")
def model_dir(tiny_data, tmp_path_factory):
    return shared_model_dir(tiny_data, tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(model_dir, tmp_path_factory):
    return tf.saved_model.load(shared_export(model_dir, tmp_path_factory)["export_dir"])


# --- REST and gRPC requests -------------------------------------------------------------------

def _rest_inputs(body: dict, input_names) -> dict:
    """Named inputs of a :predict body, as TF Serving reads the two layouts."""
    if "inputs" in body:
        return body["inputs"]
    instances = body["instances"]
    if isinstance(instances[0], dict) and "b64" not in instances[0]:  # one named map per list
        return {k: [inst[k] for inst in instances] for k in instances[0]}
    (name,) = input_names  # a single-input signature: one value per instance
    return {name: instances}


def _call(loaded, body: dict) -> np.ndarray:
    json.dumps(body)  # JSON-serialisable as sent
    signature = loaded.signatures[body["signature_name"]]
    specs = signature.structured_input_signature[1]
    decoded = {k: tf.constant(_rest_inputs_value(v), dtype=specs[k].dtype)
               for k, v in _rest_inputs(body, list(specs)).items()}
    return signature(**decoded)["scores"].numpy()


def _rest_inputs_value(v):
    if isinstance(v, dict) and set(v) == {"b64"}:
        return base64.b64decode(v["b64"])
    if isinstance(v, list):
        return [_rest_inputs_value(x) for x in v]
    return v


@pytest.mark.parametrize("layout", ["columnar", "row"])
@pytest.mark.parametrize("signature", ["serving_default", "score_lists", "score_elwc"])
def test_rest_body_scores_like_keras(loaded, keras_model, lists, layout, signature):
    model, spec = keras_model
    candidates, context = lists[0]
    body = client.rest_body(candidates, context, spec, signature=signature, layout=layout)
    assert body["signature_name"] == signature
    assert ("inputs" if layout == "columnar" else "instances") in body
    if signature != "score_lists":
        name = "examples" if signature == "serving_default" else "elwcs"
        values = body["inputs"][name] if layout == "columnar" else body["instances"]
        assert all(set(e) == {"b64"} for e in values)
        assert len(values) == (len(candidates) if signature == "serving_default" else 1)
    scores = np.reshape(_call(loaded, body), [-1])
    np.testing.assert_allclose(scores, keras_scores(model, spec, candidates, context), rtol=1e-5, atol=1e-5)
    answer = {"outputs": scores.tolist()} if layout == "columnar" else {"predictions": scores.tolist()}
    np.testing.assert_allclose(client.scores_from_rest(answer), scores)


@pytest.mark.parametrize("signature", ["serving_default", "score_lists", "score_elwc"])
def test_grpc_request_scores_like_keras(loaded, keras_model, lists, signature):
    model, spec = keras_model
    candidates, context = lists[1]
    request = client.grpc_request(candidates, context, spec, "ranker", signature=signature, version=2)
    assert (request.model_spec.name, request.model_spec.signature_name) == ("ranker", signature)
    assert request.model_spec.version.value == 2
    if signature == "serving_default":
        assert set(request.inputs) == {"examples"}
        assert tf.make_ndarray(request.inputs["examples"]).shape == (len(candidates),)
    elif signature == "score_elwc":
        assert set(request.inputs) == {"elwcs"}
        assert tf.make_ndarray(request.inputs["elwcs"]).shape == (1,)
    else:
        assert set(request.inputs) == set(fs.names(spec.features))
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    out = loaded.signatures[signature](**inputs)["scores"]
    want = keras_scores(model, spec, candidates, context)
    np.testing.assert_allclose(np.reshape(out.numpy(), [-1]), want, rtol=1e-5, atol=1e-5)
    response = predict_pb2.PredictResponse()
    response.outputs["scores"].CopyFrom(tf.make_tensor_proto(out.numpy()))
    np.testing.assert_allclose(client.scores_from_grpc(response), out.numpy())


def test_reserved_fields_are_ignored_and_missing_features_default(loaded, keras_model, lists):
    model, spec = keras_model
    candidates, context = lists[0]
    with_extras = [dict(c, position=i + 1, item_id=f"i{i}") for i, c in enumerate(candidates)]
    np.testing.assert_allclose(served(loaded, with_extras, dict(context, device_type="mobile"), spec),
                               served(loaded, candidates, context, spec))
    sparse = [{"category": c["category"]} for c in candidates]
    np.testing.assert_allclose(served(loaded, sparse, {}, spec),
                               keras_scores(model, spec, sparse, {}), rtol=1e-5, atol=1e-5)


def test_bad_requests_are_refused(loaded, keras_model, lists):
    _, spec = keras_model
    candidates, context = lists[0]
    default = loaded.signatures["serving_default"]
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="string"):
        default(examples=tf.constant([1.0, 2.0]))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        default(examples=tf.constant([["a", "b"]]))  # rank 2
    with pytest.raises(tf.errors.InvalidArgumentError):
        default(examples=tf.constant(["not a tf.Example"]))
    short = [dict(c, embedding=[0.0]) for c in candidates]
    bad = [tf.train.Example(features=tf.train.Features(feature={
        "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=c["embedding"]))}))
        .SerializeToString() for c in short]
    with pytest.raises(tf.errors.InvalidArgumentError, match="embedding"):
        default(examples=tf.constant(bad))
    arrays = client.raw_arrays(candidates, context, spec)
    arrays["price"] = arrays["price"].astype(np.int32)
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        loaded.signatures["score_lists"](**{k: tf.constant(v) for k, v in arrays.items()})
    with pytest.raises(RankerError, match="embedding"):
        client.serialized_examples(short, context, spec)
    with pytest.raises(RankerError, match="colour"):
        client.rest_body([dict(candidates[0], colour="red")], context, spec)
    with pytest.raises(RankerError, match="signature"):
        client.grpc_request(candidates, context, spec, "ranker", signature="predict")


# --- int-or-float numbers and the ELWC signature ------------------------------------------------

def _int_example(candidate: dict, context: dict, spec) -> bytes:
    """The tf.Example of `client.serving_example`, every number written as an int64_list."""
    example = tf.train.Example()
    for name, value in {**context, **candidate}.items():
        if name not in fs.names(spec.features):
            continue
        feature = example.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode("utf-8"))
        else:
            feature.int64_list.value.extend(int(v) for v in np.ravel(value))
    return example.SerializeToString()


def _integral(candidates):
    return [{k: (v if isinstance(v, str) else np.round(v).astype(int).tolist()) for k, v in c.items()}
            for c in candidates]


def test_int64_numbers_score_like_floats(loaded, keras_model, lists):
    model, spec = keras_model
    candidates, context = lists[0]
    whole = _integral(candidates)  # price and embedding as whole numbers
    assert any(c["price"] != 0 for c in whole) and any(any(c["embedding"]) for c in whole)
    as_floats = served(loaded, whole, context, spec)
    as_ints = loaded.signatures["serving_default"](
        examples=tf.constant([_int_example(c, context, spec) for c in whole]))["scores"].numpy()
    np.testing.assert_allclose(as_ints, as_floats, rtol=1e-6, atol=1e-6)  # (float32 ulps aside)
    np.testing.assert_allclose(as_ints, keras_scores(model, spec, whole, context), rtol=1e-5, atol=1e-5)
    mixed = [_int_example(c, context, spec) if i % 2 else client.serialized_examples([c], context, spec)[0]
             for i, c in enumerate(whole)]  # ints and floats in one request
    np.testing.assert_allclose(loaded.signatures["serving_default"](examples=tf.constant(mixed))["scores"],
                               as_floats, rtol=1e-6, atol=1e-6)
    elwc = input_pb2.ExampleListWithContext()
    elwc.context.ParseFromString(_int_example({}, context, spec))
    for c in whole:
        elwc.examples.add().ParseFromString(_int_example(c, {}, spec))
    by_elwc = loaded.signatures["score_elwc"](elwcs=tf.constant([elwc.SerializeToString()]))["scores"]
    np.testing.assert_allclose(by_elwc.numpy()[0], as_floats, rtol=1e-6, atol=1e-6)


def test_score_elwc_scores_a_batch_of_lists_and_masks_padding(loaded, keras_model, lists):
    model, spec = keras_model
    batch = [lists[0], (lists[1][0][:3], lists[1][1]), ([], lists[2][1])]  # lengths n, 3, 0
    elwcs = [client.elwc(c, ctx, spec).SerializeToString() for c, ctx in batch]
    scores = loaded.signatures["score_elwc"](elwcs=tf.constant(elwcs))["scores"].numpy()
    assert scores.shape == (3, len(lists[0][0]))
    for row, (candidates, context) in zip(scores, batch):
        if candidates:
            np.testing.assert_allclose(row[:len(candidates)], keras_scores(model, spec, candidates, context),
                                       rtol=1e-5, atol=1e-5)
        assert np.all(row[len(candidates):] == -np.inf)  # padding and the empty list: never a score
    empty = loaded.signatures["score_elwc"](elwcs=tf.constant([b""]))["scores"].numpy()
    assert empty.shape == (1, 0)
    assert loaded.signatures["score_elwc"](elwcs=tf.constant([], tf.string))["scores"].shape == (0, 0)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.DataLossError)):  # as TF-Ranking's
        loaded.signatures["score_elwc"](elwcs=tf.constant([b"\xff\xff not an ELWC"]))


def test_numbers_of_the_wrong_count_or_type_are_refused(loaded, keras_model, lists):
    _, spec = keras_model
    default = loaded.signatures["serving_default"]
    for value in ([1, 2], b"cheap"):  # two numbers for a numeric feature; a string for a number
        example = tf.train.Example()
        feature = example.features.feature["price"]
        if isinstance(value, bytes):
            feature.bytes_list.value.append(value)
        else:
            feature.int64_list.value.extend(value)
        with pytest.raises(tf.errors.InvalidArgumentError, match="price"):
            default(examples=tf.constant([example.SerializeToString()]))


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
def test_export_of_a_nan_model_says_so(model_dir, tmp_path, monkeypatch):
    original = export._built_model

    def poisoned(path):
        model, config, spec = original(path)
        for variable in model.relevance_tower.trainable_variables:
            variable.assign(tf.fill(tf.shape(variable), np.nan))
        return model, config, spec

    monkeypatch.setattr(export, "_built_model", poisoned)
    base = tmp_path / "ranker"
    with pytest.raises(RankerError, match="produced NaN") as err:
        export.export(model_dir, os.fspath(base))
    assert "differ" not in str(err.value) and "\n" not in str(err.value)
    assert publish.versions(os.fspath(base)) == []
