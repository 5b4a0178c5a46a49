"""Serving: the relevance-only SavedModel, its warmup file, the REST/gRPC helpers and the CI gate.

One additive model is trained for one epoch on tiny_data per module (small batches so it learns
enough for the gate's "good" side) and exported once; the tests share it.
"""
from __future__ import annotations

import base64
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.config import model_server_config_pb2

from ranker import cli
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import evaluate, train
from ranker.serving import client, export, signatures, validate, warmup

GOOD = dict(variant="additive", epochs=1, batch_size=16, learning_rate=0.02, verbose=0)


@pytest.fixture(scope="module")
def model_dir(tiny_data, tmp_path_factory):
    path = os.fspath(tmp_path_factory.mktemp("serving") / "model")
    train.train(tiny_data, path, **GOOD)
    return path


@pytest.fixture(scope="module")
def export_base(model_dir, tmp_path_factory):
    return os.fspath(tmp_path_factory.mktemp("export") / "ranker")


@pytest.fixture(scope="module")
def exported(model_dir, export_base):
    return export.export(model_dir, export_base)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported["export_dir"])


@pytest.fixture(scope="module")
def keras_model(model_dir):
    model, _, spec = export._built_model(model_dir)
    return model, spec


@pytest.fixture(scope="module")
def lists(tiny_data, keras_model):
    """A few logged lists of the judged split as (candidates, context)."""
    return warmup.elwc_requests(tiny_data, keras_model[1], 6, splits=("judged",))


def keras_scores(model, spec, candidates, context) -> np.ndarray:
    arrays = client.raw_arrays(candidates, context, spec)
    return model.relevance_tower({k: tf.constant(v) for k, v in arrays.items()})[0].numpy()


def served(loaded, candidates, context, spec) -> np.ndarray:
    examples = client.serialized_examples(candidates, context, spec)
    return loaded.signatures["serving_default"](examples=tf.constant(examples))["scores"].numpy()


def same_order(a: np.ndarray, b: np.ndarray, tie: float = 1e-4) -> bool:
    """Every pair of candidates the reference `b` separates is ordered alike by `a`."""
    da, db = a[:, None] - a[None, :], b[:, None] - b[None, :]
    separated = np.abs(db) > tie
    return bool(np.all(np.sign(da[separated]) == np.sign(db[separated])))


# --- the SavedModel ---------------------------------------------------------------------------

def test_export_layout(exported, export_base, tiny_data):
    assert exported["version"] == 1 and exported["model_name"] == "ranker"
    version_dir = os.path.join(export_base, "1")
    assert exported["export_dir"] == version_dir
    for path in ("saved_model.pb", "variables", "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(version_dir, path)), path
    assert exported["warmup"]["source"] == os.path.abspath(tiny_data)  # real candidates, not synthetic
    assert exported["max_abs_score_diff"] < 1e-5
    json.dumps(exported)


def test_signature_structure(loaded, keras_model):
    spec = keras_model[1]
    assert set(loaded.signatures) == {"serving_default", "score_lists"}
    default = loaded.signatures["serving_default"]
    assert default.structured_input_signature[1] == {
        "examples": tf.TensorSpec([None], tf.string, name="examples")}
    outputs = default.structured_outputs
    assert list(outputs) == ["scores"] and outputs["scores"].dtype == tf.float32
    assert outputs["scores"].shape.as_list() == [None]

    raw = loaded.signatures["score_lists"]
    inputs = raw.structured_input_signature[1]
    assert set(inputs) == set(fs.names(spec.features))
    for f in spec.features:
        want = tf.string if f.kind == fs.CATEGORICAL else tf.float32
        assert inputs[f.name].dtype == want
        assert inputs[f.name].shape.as_list() == [None, None] + ([f.length] if f.kind == fs.VECTOR else [])
    assert raw.structured_outputs["scores"].shape.as_list() == [None, None]
    for signature in (default, raw):
        names = set(signature.structured_input_signature[1])
        assert not names & {fs.POSITION, fs.DEVICE, fs.CLICKED, fs.RELEVANCE}


def test_no_bias_tower_variable_in_saved_model(exported, loaded, keras_model):
    model, _ = keras_model
    assert model.bias_tower is not None and model.bias_tower.variables
    keys = tf.train.list_variables(os.path.join(exported["export_dir"], "variables", "variables"))
    saved = [(k, shape) for k, shape in keys if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert not [k for k, _ in saved if "bias" in k.split("/")[0]]
    assert len(saved) == len(model.relevance_tower.variables) == exported["variables"]
    assert len(saved) < len(model.variables)
    for name in ("serving_default", "score_lists"):
        captured = loaded.signatures[name].variables
        assert len(captured) == len(model.relevance_tower.variables)
    # the bias tower's tables are the only variables shaped [(positions + 1) * devices, 1]
    cross = model.bias_tower.cross_weight.embeddings.shape.as_list()
    assert cross not in [list(shape) for _, shape in saved]


def test_export_refuses_a_module_tracking_the_bias_tower(model_dir, tmp_path, monkeypatch):
    built = {}
    original_built, original_module = export._built_model, signatures.build_module

    def remember(path):
        result = original_built(path)
        built["model"] = result[0]
        return result

    def leaky(tower, spec):
        module = original_module(tower, spec)
        module.bias_tower = built["model"].bias_tower
        return module

    monkeypatch.setattr(export, "_built_model", remember)
    monkeypatch.setattr(signatures, "build_module", leaky)
    base = tmp_path / "ranker"
    with pytest.raises(RankerError, match="bias-tower"):
        export.export(model_dir, os.fspath(base))
    assert not base.exists() or not os.listdir(base)


def test_saved_variable_check_catches_bias_variables(keras_model, tmp_path):
    model, spec = keras_model
    module = tf.Module()
    module.relevance_tower = model.relevance_tower
    module.leak = model.bias_tower.variables
    tf.saved_model.save(module, os.fspath(tmp_path))
    with pytest.raises(RankerError, match="refusing to export"):
        export.check_saved_variables(os.fspath(tmp_path), model)


def test_warmup_records_parse_and_replay(exported, loaded):
    path = os.path.join(exported["export_dir"], "assets.extra", "tf_serving_warmup_requests")
    logs = warmup.read_warmup(path)
    assert 0 < len(logs) <= 1000 and len(logs) == exported["warmup"]["records"]
    used = set()
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "ranker"
        used.add(request.model_spec.signature_name)
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        scores = loaded.signatures[request.model_spec.signature_name](**inputs)["scores"].numpy()
        assert np.all(np.isfinite(scores)) and scores.size > 0
    assert used == {"serving_default", "score_lists"}


def test_warmup_falls_back_to_synthetic_candidates(loaded, keras_model, model_dir, tmp_path):
    _, spec = keras_model
    (tmp_path / "train_summary.json").write_text(json.dumps({"data_dir": "/no/such/data"}))
    config = json.loads(open(os.path.join(model_dir, "model_config.json")).read())
    requests, source = warmup.warmup_requests(os.fspath(tmp_path), spec, config["moments"])
    assert source == "synthetic" and requests
    categories = {c["category"] for c in requests[0][0]}
    assert categories == set(fs.read_vocabulary(spec.vocabulary_path(spec.feature("category"))))
    path, count = warmup.write_warmup(os.fspath(tmp_path), requests, spec, "ranker")
    for log in warmup.read_warmup(path):
        request = log.predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        assert np.all(np.isfinite(loaded.signatures[request.model_spec.signature_name](**inputs)["scores"]))


def test_versions_increment_and_write_atomically(exported, model_dir, export_base):
    again = export.export(model_dir, export_base)
    assert again["version"] == 2 and again["export_dir"] == os.path.join(export_base, "2")
    assert sorted(os.listdir(export_base)) == ["1", "2"]  # no temporary folder left
    assert export.versions(export_base) == [1, 2] and export.next_version(export_base) == 3
    parent = os.path.dirname(export_base)
    config = model_server_config_pb2.ModelServerConfig()
    with open(os.path.join(parent, "models.config")) as fh:
        text_format.Parse(fh.read(), config)
    entries = config.model_config_list.config
    assert [(e.name, e.base_path) for e in entries] == [("ranker", "/models/ranker")]
    assert "max_batch_size" in open(os.path.join(parent, "batching_parameters.txt")).read()


def test_position_feature_baseline_exports_at_a_fixed_position(tiny_data, tmp_path, lists):
    """position-feature is served with position and device absent (fixed serving values)."""
    model_dir = os.fspath(tmp_path / "model")
    train.train(tiny_data, model_dir, variant="position-feature", epochs=1, verbose=0)
    result = export.export(model_dir, os.fspath(tmp_path / "export" / "pf"))
    signature = tf.saved_model.load(result["export_dir"]).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"examples"}
    model, _, spec = export._built_model(model_dir)
    candidates, context = lists[0]
    examples = client.serialized_examples(candidates, context, spec)
    np.testing.assert_allclose(signature(examples=tf.constant(examples))["scores"].numpy(),
                               keras_scores(model, spec, candidates, context), rtol=1e-5, atol=1e-5)


def test_export_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(RankerError):
        export.export(os.fspath(tmp_path / "nothing"), os.fspath(tmp_path / "base"))


# --- same scores as training ------------------------------------------------------------------

def test_served_scores_equal_keras_relevance_tower(loaded, keras_model, lists):
    model, spec = keras_model
    assert lists
    for candidates, context in lists:
        got = served(loaded, candidates, context, spec)
        want = keras_scores(model, spec, candidates, context)
        assert got.shape == (len(candidates),)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert same_order(got, want)
        arrays = client.raw_arrays(candidates, context, spec)
        raw = loaded.signatures["score_lists"](**{k: tf.constant(v) for k, v in arrays.items()})
        np.testing.assert_allclose(raw["scores"].numpy()[0], want, rtol=1e-5, atol=1e-5)


def test_evaluate_saved_model_equals_model_dir(exported, model_dir, tiny_data, tmp_path):
    output = tmp_path / "metrics.json"
    code = cli.main(["evaluate", "--saved-model", exported["export_dir"], "--data", tiny_data,
                     "--split", "judged", "--output", os.fspath(output)])
    assert code == 0
    from_saved = json.loads(output.read_text())["judged"]
    from_keras = evaluate.evaluate(tiny_data, model_dir=model_dir, split="judged")["judged"]
    for key in ("ndcg@1", "ndcg@5", "ndcg@10"):
        assert from_saved[key] == pytest.approx(from_keras[key], abs=1e-4)


# --- REST and gRPC requests -------------------------------------------------------------------

def _rest_inputs(body: dict) -> dict:
    """Named inputs of a :predict body, as TF Serving reads the two layouts."""
    if "inputs" in body:
        return body["inputs"]
    instances = body["instances"]
    if isinstance(instances[0], dict) and "b64" not in instances[0]:  # one named map per list
        return {k: [inst[k] for inst in instances] for k in instances[0]}
    return {"examples": instances}  # a single-input signature: one value per instance


def _call(loaded, body: dict) -> np.ndarray:
    json.dumps(body)  # JSON-serialisable as sent
    signature = loaded.signatures[body["signature_name"]]
    specs = signature.structured_input_signature[1]
    decoded = {k: tf.constant(_rest_inputs_value(v), dtype=specs[k].dtype)
               for k, v in _rest_inputs(body).items()}
    return signature(**decoded)["scores"].numpy()


def _rest_inputs_value(v):
    if isinstance(v, dict) and set(v) == {"b64"}:
        return base64.b64decode(v["b64"])
    if isinstance(v, list):
        return [_rest_inputs_value(x) for x in v]
    return v


@pytest.mark.parametrize("layout", ["columnar", "row"])
@pytest.mark.parametrize("signature", ["serving_default", "score_lists"])
def test_rest_body_scores_like_keras(loaded, keras_model, lists, layout, signature):
    model, spec = keras_model
    candidates, context = lists[0]
    body = client.rest_body(candidates, context, spec, signature=signature, layout=layout)
    assert body["signature_name"] == signature
    assert ("inputs" if layout == "columnar" else "instances") in body
    if signature == "serving_default":
        examples = body["inputs"]["examples"] if layout == "columnar" else body["instances"]
        assert all(set(e) == {"b64"} for e in examples) and len(examples) == len(candidates)
    scores = np.reshape(_call(loaded, body), [-1])
    np.testing.assert_allclose(scores, keras_scores(model, spec, candidates, context), rtol=1e-5, atol=1e-5)
    answer = {"outputs": scores.tolist()} if layout == "columnar" else {"predictions": scores.tolist()}
    np.testing.assert_allclose(client.scores_from_rest(answer), scores)


@pytest.mark.parametrize("signature", ["serving_default", "score_lists"])
def test_grpc_request_scores_like_keras(loaded, keras_model, lists, signature):
    model, spec = keras_model
    candidates, context = lists[1]
    request = client.grpc_request(candidates, context, spec, "ranker", signature=signature, version=2)
    assert (request.model_spec.name, request.model_spec.signature_name) == ("ranker", signature)
    assert request.model_spec.version.value == 2
    if signature == "serving_default":
        assert set(request.inputs) == {"examples"}
        assert tf.make_ndarray(request.inputs["examples"]).shape == (len(candidates),)
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


# --- the CI gate ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_export(tiny_data, tmp_path_factory):
    """A randomly initialised model (learning rate ~0), exported: scores are noise."""
    root = tmp_path_factory.mktemp("bad")
    train.train(tiny_data, os.fspath(root / "model"), variant="naive", epochs=1,
                learning_rate=1e-12, verbose=0)
    return export.export(os.fspath(root / "model"), os.fspath(root / "staging" / "ranker"))


def test_validate_blesses_good_and_refuses_bad(exported, bad_export, tiny_data):
    good, bad = exported["export_dir"], bad_export["export_dir"]
    # first run: no baseline, judged by the floor alone
    first = validate.validate(good, None, tiny_data, min_ndcg=0.6, max_regression=0.01)
    assert first["blessed"] and first["baseline_ndcg@10"] is None and "no baseline" in first["reason"]
    verdict = json.loads(open(os.path.join(good, "BLESSED")).read())
    assert verdict["blessed"] and verdict["metric"] == "judged ndcg@10"
    assert not os.path.exists(os.path.join(good, "NOT_BLESSED"))

    against = validate.validate(bad, good, tiny_data, min_ndcg=0.0, max_regression=0.01)
    good_ndcg, bad_ndcg = against["baseline_ndcg@10"], against["candidate_ndcg@10"]
    assert good_ndcg == pytest.approx(first["candidate_ndcg@10"])
    assert good_ndcg > bad_ndcg + 0.1, (good_ndcg, bad_ndcg)  # random scores are far worse
    assert not against["blessed"] and "regresses" in against["reason"]
    assert os.path.exists(os.path.join(bad, "NOT_BLESSED"))
    assert not os.path.exists(os.path.join(bad, "BLESSED"))
    assert export.versions(os.path.dirname(bad)) == [1]  # verdict files are not versions

    floor = round((good_ndcg + bad_ndcg) / 2, 3)
    floor_only = validate.validate(bad, None, tiny_data, min_ndcg=floor, max_regression=0.01)
    assert not floor_only["blessed"] and "floor" in floor_only["reason"]

    code = cli.main(["validate", "--candidate", good, "--baseline", bad, "--data", tiny_data,
                     "--min-ndcg", str(floor), "--max-regression", "0.01"])
    assert code == 0 and os.path.exists(os.path.join(good, "BLESSED"))
    code = cli.main(["validate", "--candidate", bad, "--baseline", good, "--data", tiny_data,
                     "--min-ndcg", "0", "--max-regression", "0.01"])
    assert code == 1


def test_decide_rules():
    assert validate.decide(0.8, None, 0.5, 0.01)[0]
    assert not validate.decide(0.4, None, 0.5, 0.01)[0]
    assert validate.decide(0.795, 0.8, 0.5, 0.01)[0]
    assert not validate.decide(0.78, 0.8, 0.5, 0.01)[0]
    assert not validate.decide(float("nan"), None, 0.0, 0.01)[0]


def test_validate_rejects_a_folder_that_is_not_an_export(tiny_data, tmp_path):
    with pytest.raises(RankerError, match="saved_model.pb"):
        validate.validate(os.fspath(tmp_path), None, tiny_data, 0.5, 0.01)


def test_push_copies_only_blessed_versions_into_the_serving_base(exported, tiny_data, tmp_path):
    from ranker.serving import push

    staged = tmp_path / "staging" / "ranker"
    shutil.copytree(exported["export_dir"], staged / "1",
                    ignore=shutil.ignore_patterns(validate.BLESSED, validate.NOT_BLESSED))
    serving_base = str(tmp_path / "serving" / "ranker")
    with pytest.raises(RankerError, match="not blessed"):
        push.push(str(staged / "1"), serving_base)
    assert push.last_pushed(serving_base) is None
    verdict = validate.validate(str(staged / "1"), None, tiny_data, min_ndcg=0.0, max_regression=0.01)
    assert verdict["blessed"]
    pushed = push.push(str(staged / "1"), serving_base)
    assert pushed["version"] == 1 and push.last_pushed(serving_base) == os.path.join(serving_base, "1")
    assert sorted(os.listdir(serving_base)) == ["1"]  # no temporary folder left behind
    assert "base_path" in open(pushed["models_config"]).read()
    with open(os.path.join(serving_base, "1", "saved_model.pb"), "rb") as copy, \
            open(os.path.join(exported["export_dir"], "saved_model.pb"), "rb") as original:
        assert copy.read() == original.read()  # the pushed copy is the same model
