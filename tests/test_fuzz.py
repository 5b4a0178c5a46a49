"""Fuzzed inputs: the spec parser and the log-line parser fail only in their declared ways.

Fast by design (small `max_examples`); raise them locally when touching either parser.
"""
from __future__ import annotations

import dataclasses
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_SPEC
from ranker.features import spec as fs
from ranker.pipeline import parse

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.integers(-3, 60)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _maybe(keys_and_values: dict) -> st.SearchStrategy:
    """Objects with any subset of the given keys, each value from its strategy."""
    return st.fixed_dictionaries({}, optional=keys_and_values)


def mostly(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A valid value seven times in eight, else any JSON value: inputs are often valid but for
    one field, so the deeper checks get reached."""
    return st.sampled_from(range(8)).flatmap(lambda i: json_values if i == 7 else valid)


# --- parse_spec -----------------------------------------------------------------------------

names = st.sampled_from(["price", "brand", "q", "", "a b", "position", "é", "x_1"]) | st.text(max_size=6)
feature_entries = mostly(st.fixed_dictionaries({
    "name": mostly(names),
    "kind": mostly(st.sampled_from(list(fs.KINDS))),
}, optional={
    "length": mostly(st.integers(-1, 4)),
    "hash_buckets": mostly(st.integers(-1, 64)),
    "vocabulary_size": mostly(st.integers(-1, 64)),
    "vocabulary_file": mostly(st.sampled_from(["vocab/x.txt", ""])),
    "colour": json_values,  # unknown: always refused
}))
spec_objects = mostly(_maybe({
    "context": mostly(st.lists(feature_entries, max_size=3)),
    "item": mostly(st.lists(feature_entries, max_size=4)),
    "max_list_size": mostly(st.integers(-2, 100)),
    "device_vocabulary_file": mostly(st.text(max_size=8)),
}))


@FUZZ
@given(spec_objects)
def test_parse_spec_raises_only_one_line_spec_errors(obj):
    try:
        spec = fs.parse_spec(obj)
    except fs.SpecError as err:
        assert str(err) and "\n" not in str(err)
        return
    # What it accepts survives its own round trip ("" device vocabulary file means the default).
    assert fs.parse_spec(spec.to_json()) == dataclasses.replace(
        spec, device_vocabulary_file=spec.device_vocabulary_file or None)


# --- parse_line -----------------------------------------------------------------------------

SPEC = fs.parse_spec(TINY_SPEC)


floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf])  # specials often
LINE_FIELDS = {
    fs.REQUEST_ID: mostly(st.text(min_size=1, max_size=6)),
    fs.POSITION: mostly(st.integers(-1, 12)),
    fs.DEVICE: mostly(st.sampled_from(["desktop", "mobile", ""])),
    fs.ITEM_ID: mostly(st.text(min_size=1, max_size=6)),
    fs.CLICKED: mostly(st.sampled_from([0, 1, True, False])),
    fs.RELEVANCE: mostly(st.none() | st.floats(0, 4) | st.integers(0, 4)),
    fs.TIMESTAMP: mostly(st.none() | st.integers(0, 2**40)),
    parse.CONTEXT_KEY: mostly(_maybe({"intent": mostly(st.sampled_from(["a", "b", 3])),
                                      "other": json_values})),
    parse.FEATURES_KEY: mostly(_maybe({
        "category": mostly(st.text(max_size=4)),
        "brand": mostly(st.integers() | st.text(max_size=3)),
        "price": mostly(floats | st.integers()),
        "embedding": mostly(st.lists(floats | st.integers(-9, 9), min_size=2, max_size=4)),
    })),
}


@st.composite
def log_lines(draw) -> bytes:
    """Schema-shaped objects with random types, serialised as JSON (NaN, \\u escapes and lone
    surrogates included); sometimes a field dropped, blanks around, or the line truncated."""
    obj = draw(st.fixed_dictionaries(LINE_FIELDS))
    for key in draw(st.sets(st.sampled_from(sorted(obj)), max_size=2)):
        del obj[key]
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    text = draw(st.sampled_from(["", "", " "])) + text + draw(st.sampled_from(["", "", "", "\n", "\n", " x"]))
    raw = text.encode("utf-8", errors="surrogatepass")
    return raw[:draw(st.integers(0, len(raw)))] if draw(st.sampled_from(range(20))) == 19 else raw


def _check(raw: bytes) -> None:
    impression, dead = parse.parse_line(raw, SPEC, "logs.jsonl", 7)
    assert (impression is None) != (dead is None)
    if dead is not None:
        assert dead["reason"] in parse.LINE_REASONS, dead
        assert (dead["source"], dead["line"]) == ("logs.jsonl", 7)
        assert isinstance(dead["detail"], str) and "\n" not in dead["detail"]
    else:
        assert isinstance(impression[fs.REQUEST_ID], str) and impression[fs.REQUEST_ID]
        assert type(impression[fs.POSITION]) is int and impression[fs.POSITION] >= 1
        assert impression[fs.CLICKED] in (0, 1, None)
        assert set(impression[parse.FEATURES_KEY]) <= {"category", "brand", "price", "embedding"}
        assert len(impression[parse.FEATURES_KEY].get("embedding", [0.0] * 3)) == 3
    assert parse.parse_line(raw, SPEC, "logs.jsonl", 7) == (impression, dead)  # same input, same answer


@FUZZ
@given(st.binary(max_size=200))
def test_parse_line_survives_arbitrary_bytes(raw):
    _check(raw)


@FUZZ
@given(log_lines())
def test_parse_line_on_schema_shaped_objects(raw):
    _check(raw)


_HUGE = st.one_of(st.integers(min_value=-(10**401), max_value=10**401),
                  st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([2**31 - 1, 2**31, 2**63, 10**30, 3.4028234663852886e38,
                                   3.4028235677973366e38, -1e39, 1e300]))


@FUZZ
@given(_HUGE, _HUGE, st.lists(_HUGE, min_size=3, max_size=3))
def test_parse_line_keeps_only_values_the_elwc_can_hold(position, price, embedding):
    """Any magnitude: a dead letter with a reason, or an int32 position and float32 numbers."""
    obj = {"request_id": "r", "position": position, "device_type": "d", "item_id": "i",
           "clicked": 1, "features": {"price": price, "embedding": embedding}}
    _check(json.dumps(obj).encode())
    impression, dead = parse.parse_line(json.dumps(obj).encode(), SPEC, "logs.jsonl", 7)
    if impression is not None:
        assert 1 <= impression[fs.POSITION] <= 2**31 - 1
        values = [impression[parse.FEATURES_KEY]["price"], *impression[parse.FEATURES_KEY]["embedding"]]
        assert all(math.isfinite(v) and abs(v) <= parse.FLOAT32_MAX for v in values)
    else:
        assert dead["reason"] in (parse.INVALID_POSITION, parse.OUT_OF_RANGE, parse.NON_FINITE)
