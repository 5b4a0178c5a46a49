"""Line validation (ranker.pipeline.parse): a valid line normalised, judged lines, and every bad
line rejected with a stable reason."""
from __future__ import annotations

import pytest

from ranker.pipeline import parse

from pipeline_helpers import SPEC, _DROP, dumps, record

# --- parse_line ----------------------------------------------------------------------------------

def test_parse_line_normalises_a_valid_line():
    rec = record(clicked=True, context={"query": 17, "other": "x"})
    impression, dead = parse.parse_line(dumps(rec), SPEC, "f.jsonl", 3)
    assert dead is None
    assert impression == {
        "request_id": "r1", "position": 1, "device_type": "desktop", "item_id": "r1-i1",
        "clicked": 1, "relevance": None, "timestamp": 1_700_000_000,
        "context": {"query": "17"},
        "features": {"brand": "acme", "price": 9.5, "emb": [0.1, 0.2, 0.3]},
    }


def test_parse_line_judged_line_and_optional_fields():
    rec = record(clicked=_DROP, relevance=3, timestamp=_DROP, context=_DROP,
                 features={"price": 2, "emb": [1, 2, 3]})
    impression, dead = parse.parse_line(dumps(rec), SPEC, "f.jsonl", 1)
    assert dead is None and parse.is_judged(impression)
    assert impression["relevance"] == 3.0 and impression["timestamp"] is None
    assert impression["context"] == {} and impression["features"] == {"price": 2.0,
                                                                         "emb": [1.0, 2.0, 3.0]}


BAD_LINES = [
    (b'{"request_id": "r\xff\xfe", "position": 1}', parse.INVALID_UTF8),
    (b'{"request_id": "r1", "position": 1', parse.INVALID_JSON),
    (b"", parse.INVALID_JSON),
    (b"[1, 2, 3]", parse.INVALID_JSON),
    (b'"just a string"', parse.INVALID_JSON),
    (dumps(record(request_id=_DROP)), parse.MISSING_FIELD),
    (dumps(record(position=_DROP)), parse.MISSING_FIELD),
    (dumps(record(device_type=_DROP)), parse.MISSING_FIELD),
    (dumps(record(item_id=_DROP)), parse.MISSING_FIELD),
    (dumps(record(clicked=_DROP)), parse.MISSING_FIELD),
    (dumps(record(request_id=5)), parse.WRONG_TYPE),
    (dumps(record(request_id="")), parse.WRONG_TYPE),
    (dumps(record(item_id=["a"])), parse.WRONG_TYPE),
    (dumps(record(clicked=2)), parse.WRONG_TYPE),
    (dumps(record(clicked="1")), parse.WRONG_TYPE),
    (dumps(record(clicked=1.0)), parse.WRONG_TYPE),
    (dumps(record(relevance="high")), parse.WRONG_TYPE),
    (dumps(record(timestamp="yesterday")), parse.WRONG_TYPE),
    (dumps(record(context={"query": {"nested": 1}})), parse.WRONG_TYPE),
    (dumps(record(context={"query": True})), parse.WRONG_TYPE),
    (dumps(record(context="shoes")), parse.WRONG_TYPE),
    (dumps(record(features={"price": "9.50"})), parse.WRONG_TYPE),
    (dumps(record(features={"price": False})), parse.WRONG_TYPE),
    (dumps(record(features={"emb": "0.1,0.2,0.3"})), parse.WRONG_TYPE),
    (dumps(record(features={"emb": [0.1, "a", 0.3]})), parse.WRONG_TYPE),
    (dumps(record(position=0)), parse.INVALID_POSITION),
    (dumps(record(position=-2)), parse.INVALID_POSITION),
    (dumps(record(position=2.0)), parse.INVALID_POSITION),
    (dumps(record(position=2.5)), parse.INVALID_POSITION),
    (dumps(record(position=True)), parse.INVALID_POSITION),
    (dumps(record(position="3")), parse.INVALID_POSITION),
    (b'{"request_id": "r1", "position": 1, "device_type": "d", "item_id": "i", "clicked": 0,'
     b' "features": {"price": NaN}}', parse.NON_FINITE),
    (dumps(record(features={"emb": [0.1, float("inf"), 0.3]})), parse.NON_FINITE),
    (dumps(record(relevance=float("nan"))), parse.NON_FINITE),
    (dumps(record(position=float("-inf"))), parse.NON_FINITE),
    (dumps(record(features={"emb": [0.1, 0.2]})), parse.WRONG_VECTOR_LENGTH),
    (dumps(record(features={"emb": [0.1, 0.2, 0.3, 0.4]})), parse.WRONG_VECTOR_LENGTH),
    (b'{"request_id": "r\\ud800", "position": 1, "device_type": "d", "item_id": "i", "clicked": 0}',
     parse.INVALID_UTF8),
]


@pytest.mark.parametrize("raw,reason", BAD_LINES)
def test_parse_line_rejects_with_a_stable_reason(raw, reason):
    impression, dead = parse.parse_line(raw, SPEC, "logs/a.jsonl", 42)
    assert impression is None
    assert dead["reason"] == reason, dead
    assert dead["source"] == "logs/a.jsonl" and dead["line"] == 42
    assert dead["raw"] == raw.decode("utf-8", errors="replace") and dead["detail"]


def test_parse_line_missing_field_names_the_field():
    _, dead = parse.parse_line(dumps(record(clicked=_DROP)), SPEC, "a", 1)
    assert dead["detail"] == "clicked"
    _, dead = parse.parse_line(dumps(record(item_id=_DROP)), SPEC, "a", 1)
    assert dead["detail"] == "item_id"


def test_dead_letter_raw_is_truncated():
    raw = dumps(record(position=0, item_id="x" * 5000))
    _, dead = parse.parse_line(raw, SPEC, "a", 1)
    assert len(dead["raw"]) == parse.MAX_RAW_CHARS


def test_reasons_are_distinct():
    assert len(set(parse.REASONS)) == len(parse.REASONS) == 12
