"""Serving: the relevance-only SavedModel, its signatures, warmup file and REST/gRPC helpers.

The good additive model is trained and exported once per test run (serving_helpers); the tests
share it. Requests (REST, gRPC, int-or-float numbers, ELWC): test_serving_requests.py. The CI
gate: test_validate.py; push: test_push.py; the export base's files: test_publish.py.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import keras_scores, same_order, served, shared_export, shared_model_dir

from ranker import cli
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import evaluate, train
from ranker.serving import client, export, signatures, warmup


@pytest.fixture(scope="module")
def model_dir(tiny_data, tmp_path_factory):
    return shared_model_dir(tiny_data, tmp_path_factory)


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    return shared_export(model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def export_base(exported):
    return os.path.dirname(exported["export_dir"])


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported["export_dir"])


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
    assert set(loaded.signatures) == {"serving_default", "score_lists", "score_elwc"}
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
    elwc = loaded.signatures["score_elwc"]
    assert elwc.structured_input_signature[1] == {"elwcs": tf.TensorSpec([None], tf.string, name="elwcs")}
    assert elwc.structured_outputs["scores"].shape.as_list() == [None, None]
    for signature in (default, raw, elwc):
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
    for name in ("serving_default", "score_lists", "score_elwc"):
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
    assert used == {"serving_default", "score_lists", "score_elwc"}


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


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
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
