"""ranker.features.wire: byte-identical to build_elwc(...).SerializeToString(deterministic=True)."""
from __future__ import annotations

import collections
import gzip
import random
import subprocess
import sys

import pytest

from ranker.features import spec as fs
from ranker.features import wire
from ranker.features.codec import build_elwc
from ranker.pipeline.parse import parse_line
from ranker.simulation import simulate as sm

from pipeline_helpers import SPEC, clean_records, dumps

# Names sorting before, between and after the reserved ones, plus non-ASCII (2-, 3-, 4-byte UTF-8).
NAMES = ["a_feature", "b", "clicked_x", "d", "device", "item", "itemid", "p", "pos", "position_2",
         "query", "relevancy", "request", "zzz", "Z", "_x", "é", "名前", "ｚ", "𝔘", "x" * 200]
FLOATS = [0.0, -0.0, 1.0, -1.5, 1e-45, 1e-46, 3.4e38, -3.4e38, 3.4028235e38, 3.5e38, 1e39,
          float("inf"), float("-inf"), float("nan"), 0.1, 1 / 3, 7, True, 2**40, "2.5"]
STRINGS = ["", "a", "shoes", "é", "名前", "😀 emoji", "x" * 300, "\x00nul", "line\nbreak"]


def random_spec(rng: random.Random) -> fs.FeatureSpec:
    names = rng.sample(NAMES, rng.randint(0, 8))
    split = rng.randint(0, len(names))
    entries = {fs.CONTEXT: [], fs.ITEM: []}
    for i, name in enumerate(names):
        kind = rng.choice(fs.KINDS)
        entry = {"name": name, "kind": kind}
        if kind == fs.VECTOR:
            entry["length"] = rng.choice([1, 2, 3, 16, 40])
        entries[fs.CONTEXT if i < split else fs.ITEM].append(entry)
    return fs.parse_spec(entries)


def random_value(rng: random.Random, feature: fs.Feature):
    if rng.random() < 0.15:
        return None
    if feature.kind == fs.CATEGORICAL:
        return rng.choice(STRINGS + [0, 42, -7, 3.5, True, ""])
    if feature.kind == fs.NUMERIC:
        return rng.choice(FLOATS + [rng.gauss(0, 1e3)])
    length = feature.length if rng.random() < 0.9 else rng.choice([0, feature.length + 1])
    return [rng.choice(FLOATS + [rng.gauss(0, 1)]) for _ in range(length)]


def random_features(rng: random.Random, features) -> dict | None:
    if rng.random() < 0.05:
        return rng.choice([None, {}])
    out = {f.name: random_value(rng, f) for f in features if rng.random() < 0.9}
    out["undeclared"] = "ignored"
    return out


def random_list(rng: random.Random, spec: fs.FeatureSpec) -> list[dict]:
    judged = rng.random() < 0.3
    context = random_features(rng, spec.context)
    positions = rng.sample([0, 1, 2, 3, 5, 8, 13, 100, 127, 128, 300, 16384, 2**31 - 1, -1, -2**31],
                           rng.randint(1, 8))
    out = []
    for position in positions:  # unsorted: the encoder orders by position like build_elwc
        impression = {fs.REQUEST_ID: rng.choice(STRINGS + ["r1"]), fs.POSITION: position,
                      fs.DEVICE: rng.choice(["desktop", "mobile", "", fs.JUDGED_DEVICE, "ü"]),
                      fs.ITEM_ID: rng.choice(STRINGS + [17]), "timestamp": 1_700_000_000,
                      fs.CLICKED: None if judged else rng.choice([0, 1, True, 1.0]),
                      fs.RELEVANCE: rng.choice([0.0, 1.0, 4.0, 2.5, 1e-45]) if judged else None,
                      "context": context, "features": random_features(rng, spec.item)}
        for optional in (fs.CLICKED, fs.RELEVANCE, "context", "features"):
            if impression[optional] is None and rng.random() < 0.5:
                del impression[optional]  # absent and None encode alike
        out.append(impression)
    return out


def expected(impressions, spec) -> bytes:
    return build_elwc(impressions, spec).SerializeToString(deterministic=True)


def test_random_lists_are_byte_identical():
    rng = random.Random(20240601)
    for trial in range(400):
        spec = random_spec(rng)
        impressions = random_list(rng, spec)
        assert wire.encode_elwc(impressions, spec) == expected(impressions, spec), (trial, spec)


def test_encoder_matches_on_every_kind_of_edge_value():
    spec = fs.parse_spec({"context": [{"name": "a_feature", "kind": "numeric"}],
                          "item": [{"name": "zzz", "kind": "vector", "length": 3},
                                   {"name": "n", "kind": "numeric"},
                                   {"name": "c", "kind": "categorical"}]})
    encoder = wire.ElwcEncoder(spec)
    for value in FLOATS:
        impressions = [{fs.REQUEST_ID: "r", fs.POSITION: 2**31 - 1, fs.DEVICE: "d", fs.ITEM_ID: "i",
                        fs.CLICKED: None, fs.RELEVANCE: value, "context": {"a_feature": value},
                        "features": {"zzz": [value, -0.0, 1e-45], "n": value, "c": value}}]
        assert encoder.encode(impressions) == expected(impressions, spec), value


def test_out_of_range_int64_raises_like_protobuf():
    impressions = [{fs.REQUEST_ID: "r", fs.POSITION: 2**63, fs.DEVICE: "d", fs.ITEM_ID: "i"}]
    with pytest.raises(ValueError):
        wire.encode_elwc(impressions, SPEC)


def parsed_lists(lines, spec) -> list[list[dict]]:
    by_request = collections.defaultdict(list)
    for number, raw in enumerate(lines, 1):
        impression, dead = parse_line(raw, spec, "test", number)
        assert dead is None, dead
        by_request[impression[fs.REQUEST_ID]].append(impression)
    return list(by_request.values())


def test_parsed_pipeline_records_are_byte_identical():
    lists = parsed_lists([dumps(r) for r in clean_records(60, seed=3)], SPEC)
    assert len(lists) == 60
    for impressions in lists:
        assert wire.encode_elwc(impressions, SPEC) == expected(impressions, SPEC)


def test_simulated_logs_clicks_and_judged_are_byte_identical(tmp_path):
    sm.simulate_to_dir(world="synthetic", letor_train=None, letor_test=None, sessions_per_query=3,
                       logging_quality=0.5, click_model="pbm", devices=["desktop", "mobile"],
                       seed=1, output_dir=str(tmp_path), num_queries=20)
    spec = fs.load_spec(str(tmp_path / fs.SPEC_FILENAME))
    encoder = wire.ElwcEncoder(spec)
    for name in (sm.IMPRESSIONS_FILE, sm.JUDGED_FILE):
        with gzip.open(tmp_path / name, "rb") as fh:
            lists = parsed_lists(fh.read().splitlines(), spec)
        assert lists, name
        for impressions in lists:
            assert encoder.encode(impressions) == expected(impressions, spec)


def test_encode_elwc_keeps_one_encoder_per_spec_object():
    impressions = [{fs.REQUEST_ID: "r", fs.POSITION: 1, fs.DEVICE: "d", fs.ITEM_ID: "i"}]
    wire.encode_elwc(impressions, SPEC)
    first = wire._CACHE[id(SPEC)][1]
    wire.encode_elwc(impressions, SPEC)
    assert wire._CACHE[id(SPEC)][1] is first
    other = fs.parse_spec({"item": [{"name": "n", "kind": "numeric"}]})
    assert wire.encode_elwc(impressions, other) == expected(impressions, other)
    wire.encode_elwc(impressions, SPEC)  # two specs in turn (a worker's DoFns): both stay cached
    assert wire._CACHE[id(SPEC)][1] is first and wire._CACHE[id(other)][0] is other


def test_importing_wire_does_not_import_tensorflow():
    code = ("import sys, ranker.features.wire; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', "
            "'tensorflow_serving', 'google')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
