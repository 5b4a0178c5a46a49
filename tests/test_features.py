"""The feature spec: validation with clear errors, and the invariants every derived spec keeps."""
from __future__ import annotations

import json

import pytest
import tensorflow as tf

from ranker.features import spec as fs
from ranker.features import tensors

GOOD = {
    "max_list_size": 12,
    "context": [{"name": "segment", "kind": "categorical", "vocabulary_size": 5}],
    "item": [
        {"name": "category", "kind": "categorical"},
        {"name": "brand", "kind": "categorical", "hash_buckets": 64},
        {"name": "price", "kind": "numeric"},
        {"name": "embedding", "kind": "vector", "length": 4},
    ],
}


def test_round_trip_through_json(tmp_path):
    spec = fs.parse_spec(GOOD)
    path = tmp_path / "spec.json"
    spec.save(str(path))
    again = fs.load_spec(str(path))
    assert again.to_json() == spec.to_json()
    assert again.base_dir == str(tmp_path)


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s["item"].append({"name": "price", "kind": "numeric"}), "declared twice"),
    (lambda s: s["item"].append({"name": "position", "kind": "numeric"}), "reserved"),
    (lambda s: s["item"].append({"name": "x", "kind": "text"}), "kind must be one of"),
    (lambda s: s["item"].append({"name": "v", "kind": "vector"}), "positive integer length"),
    (lambda s: s["item"].append({"name": "v", "kind": "vector", "length": 0}), "positive integer length"),
    (lambda s: s["item"].append({"name": "n", "kind": "numeric", "length": 2}), "only vector"),
    (lambda s: s["item"].append({"name": "n", "kind": "numeric", "hash_buckets": 3}), "only categorical"),
    (lambda s: s["item"].append({"name": "c", "kind": "categorical", "hash_buckets": 3,
                                 "vocabulary_size": 3}), "not both"),
    (lambda s: s["item"].append({"name": "c", "kind": "categorical", "colour": 1}), "unknown keys"),
    (lambda s: s["item"].append({"name": "bad name", "kind": "numeric"}), "identifier"),
    (lambda s: s.update(max_list_size=0), "max_list_size"),
    (lambda s: s.update(extra=1), "unknown top-level"),
    (lambda s: s.update(item={"name": "x"}), "must be a list"),
])
def test_invalid_specs_fail_with_a_one_line_reason(mutate, message):
    spec = json.loads(json.dumps(GOOD))
    mutate(spec)
    with pytest.raises(fs.SpecError, match=message) as err:
        fs.parse_spec(spec, source="spec.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("spec.json")


def test_load_spec_errors_name_the_file(tmp_path):
    with pytest.raises(fs.SpecError, match="not found"):
        fs.load_spec(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(fs.SpecError, match="broken.json: not valid JSON"):
        fs.load_spec(str(broken))


def test_resolved_spec_points_at_vocabularies(tmp_path):
    spec = fs.parse_spec(GOOD, base_dir=str(tmp_path)).resolved({"segment": 4, "category": 9})
    assert spec.feature("segment").vocabulary_size == 4
    assert spec.feature("category").vocabulary_file == "vocab/category.txt"
    assert spec.feature("brand").vocabulary_file is None  # hashed: no vocabulary
    assert spec.vocabulary_path(fs.DEVICE) == str(tmp_path / "vocab" / "device_type.txt")


def test_parse_specs_cover_every_feature_and_keep_position_out_of_serving():
    spec = fs.parse_spec(GOOD)
    context = tensors.context_parse_spec(spec)
    example = tensors.example_parse_spec(spec)
    serving = tensors.serving_parse_spec(spec)
    assert set(context) == {"segment", fs.DEVICE}
    assert set(example) == {"category", "brand", "price", "embedding", fs.POSITION, fs.CLICKED,
                            fs.RELEVANCE}
    assert set(serving) == set(fs.names(spec.features))
    assert fs.POSITION not in serving and fs.DEVICE not in serving
    assert serving["embedding"].shape == [4] and serving["category"].dtype == tf.string
    assert tensors.context_parse_spec(spec, with_device=False).keys() == {"segment"}


def test_tensor_spec_shapes():
    spec = fs.parse_spec(GOOD)
    assert tensors.tensor_spec(spec.feature("embedding"), 2).shape.as_list() == [None, None, 4]
    assert tensors.tensor_spec(spec.feature("price"), 1).shape.as_list() == [None]


CROSSES = [{"name": "segment_x_category", "features": ["segment", "category"], "hash_buckets": 1000}]


def test_crosses_round_trip_and_stay_out_of_the_feature_list(tmp_path):
    spec = fs.parse_spec(dict(GOOD, crosses=CROSSES))
    assert spec.crosses == (fs.Cross("segment_x_category", ("segment", "category"), 1000),)
    assert [f.name for f in spec.features] == [f.name for f in fs.parse_spec(GOOD).features]
    path = tmp_path / "spec.json"
    spec.resolved({"segment": 4, "category": 9}).save(str(path))
    again = fs.load_spec(str(path))
    assert again.crosses == spec.crosses
    assert again.to_json()["crosses"] == CROSSES
    assert "crosses" not in fs.parse_spec(GOOD).to_json()  # specs without crosses are written as before


@pytest.mark.parametrize("cross,message", [
    ({"name": "x", "features": ["segment", "missing"], "hash_buckets": 8}, "not a declared categorical"),
    ({"name": "x", "features": ["segment", "price"], "hash_buckets": 8}, "not a declared categorical"),
    ({"name": "x", "features": ["segment"], "hash_buckets": 8}, "two or more distinct"),
    ({"name": "x", "features": ["segment", "segment"], "hash_buckets": 8}, "two or more distinct"),
    ({"name": "x", "features": "segment,category", "hash_buckets": 8}, "two or more distinct"),
    ({"name": "x", "features": ["segment", "category"]}, "hash_buckets must be a positive integer"),
    ({"name": "x", "features": ["segment", "category"], "hash_buckets": 0}, "hash_buckets must be"),
    ({"name": "x", "features": ["segment", "category"], "hash_buckets": True}, "hash_buckets must be"),
    ({"name": "price", "features": ["segment", "category"], "hash_buckets": 8}, "declared twice"),
    ({"name": "item_id", "features": ["segment", "category"], "hash_buckets": 8}, "reserved"),
    ({"name": "a b", "features": ["segment", "category"], "hash_buckets": 8}, "identifier"),
    ({"name": "x", "features": ["segment", "category"], "hash_buckets": 8, "salt": 1}, "unknown keys"),
    ("segment_x_category", "each cross is an object"),
])
def test_invalid_crosses_fail_with_a_one_line_reason(cross, message):
    with pytest.raises(fs.SpecError, match=message) as err:
        fs.parse_spec(dict(GOOD, crosses=[cross]), source="spec.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("spec.json")


def test_cross_names_are_unique_and_crosses_a_list():
    with pytest.raises(fs.SpecError, match="declared twice"):
        fs.parse_spec(dict(GOOD, crosses=CROSSES + CROSSES))
    with pytest.raises(fs.SpecError, match="'crosses' must be a list"):
        fs.parse_spec(dict(GOOD, crosses=CROSSES[0]))
