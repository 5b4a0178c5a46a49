"""lists.py on its own (TestPipeline + assert_that): parsing into valid impressions and dead
letters, grouping into lists with the list rules, and the stable train/eval split."""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from ranker.pipeline import parse
from ranker.pipeline.lists import (
    DEAD_LETTER, LISTS, SPLITS, TRUNCATED, VALID, GroupIntoLists, ParseImpressions, SplitByRequestHash,
    pack_impression, split_of, unpack_impression, _vector_fields)
from ranker.pipeline.runtime import NAMESPACE

from pipeline_helpers import SPEC, _DROP, beam_pipeline, dumps, record, write_lines


def test_parse_impressions_tags_valid_and_dead_letters():
    lines = [("a", 1, dumps(record("r1", 1))), ("a", 2, b"{oops"), ("a", 3, dumps(record("r2", 0)))]
    with beam_pipeline() as p:
        parsed = p | beam.Create(lines) | ParseImpressions(SPEC)
        valid = parsed[VALID] | beam.Map(lambda kv: (kv[0], kv[1][:2], kv[1][3]["item_id"]))
        dead = parsed[DEAD_LETTER] | beam.Map(lambda d: (d["source"], d["line"], d["reason"]))
        assert_that(valid, equal_to([("r1", ("a", 1), "r1-i1")]), label="valid")
        assert_that(dead, equal_to([("a", 2, parse.INVALID_JSON),
                                    ("a", 3, parse.INVALID_POSITION)]), label="dead")


def test_parse_impressions_counts_dead_letters_by_reason():
    from apache_beam.metrics.metric import MetricsFilter

    p = beam_pipeline()
    lines = [("a", 1, b"{oops"), ("a", 2, b"[]"), ("a", 3, dumps(record()))]
    _ = p | beam.Create(lines) | ParseImpressions(SPEC)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in
                result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    assert counters["dead_letter_invalid_json"] == 2 and counters["lines_parsed"] == 1


def _located(tmp_path: Path, lines: list[tuple[str, int, dict]]):
    """Parsed (request_id, (source, line, raw, impression)) of lines written to real files."""
    by_file: dict = {}
    for name, n, rec in lines:
        by_file.setdefault(name, {})[n] = dumps(rec)
    paths = {}
    for name, numbered in by_file.items():
        paths[name] = str(write_lines(tmp_path / f"{name}.jsonl",
                                      [numbered.get(n, b"{}") for n in range(1, max(numbered) + 1)]))
    out = []
    for name, n, rec in lines:
        impression, dead = parse.parse_line(dumps(rec), SPEC, paths[name], n)
        assert dead is None
        out.append((impression["request_id"], (paths[name], n, dumps(rec), impression)))
    return out


def test_group_into_lists_orders_and_applies_list_rules(tmp_path):
    judged = dict(clicked=_DROP, relevance=2)
    lines = _located(tmp_path,
        [("b", 1, record("ok", 3)), ("a", 9, record("ok", 1)), ("a", 2, record("ok", 2))]
        + [("a", 3, record("dup", 1, item_id="first")),
           ("a", 7, record("dup", 1, item_id="second")), ("a", 4, record("dup", 2))]
        + [("a", 10 + i, record("long", i + 1)) for i in range(SPEC.max_list_size + 2)]
        + [("a", 20 + i, record("jlong", i + 1, **judged)) for i in range(SPEC.max_list_size + 1)]
        + [("a", 30, record("mixed", 1)), ("a", 31, record("mixed", 2, **judged))]
        + [("a", 40, record("j", 2, **judged)), ("a", 41, record("j", 1, **judged))]
        + [("a", 50, record("dev", 1)), ("a", 51, record("dev", 2, device_type="mobile"))]
        + [("a", 52, record("ctx", 1)), ("a", 53, record("ctx", 2, context={"query": "x"}))])
    raw_of = {(located[0], located[1]): located[2].decode() for _, located in lines}
    with beam_pipeline() as p:
        grouped = p | beam.Create(lines) | GroupIntoLists(SPEC)
        lists = grouped[LISTS] | beam.Map(
            lambda l: (l[0], l[1], [(i["position"], i["item_id"]) for i in l[2]]))
        dead = grouped[DEAD_LETTER] | beam.Map(
            lambda d: (d["line"], d["reason"], d["raw"] == raw_of[(d["source"], d["line"])]))
        size = SPEC.max_list_size
        assert_that(lists, equal_to([
            ("ok", "clicked", [(1, "ok-i1"), (2, "ok-i2"), (3, "ok-i3")]),
            ("dup", "clicked", [(1, "first"), (2, "dup-i2")]),
            ("j", "judged", [(1, "j-i1"), (2, "j-i2")]),
            ("long", "clicked", [(i + 1, f"long-i{i + 1}") for i in range(size)]),
        ]), label="lists")
        assert_that(grouped[TRUNCATED], equal_to([2]), label="truncated")
        assert_that(dead, equal_to(
            [(7, parse.DUPLICATE_POSITION, True)]
            + [(20 + i, parse.LIST_TOO_LONG, True) for i in range(size + 1)]
            + [(30, parse.MIXED_LABELS, True), (31, parse.MIXED_LABELS, True)]
            + [(n, parse.INCONSISTENT_REQUEST, True) for n in (50, 51, 52, 53)]), label="dead")


def test_group_into_lists_keeps_vectors_as_float32():
    impression, _ = parse.parse_line(dumps(record(features={"emb": [0.1, 1e-50, 2]})), SPEC, "a", 1)
    vectors = _vector_fields(SPEC)
    packed = pack_impression(impression, vectors)
    assert impression["features"]["emb"] == [0.1, 1e-50, 2.0]  # the input is not mutated
    assert unpack_impression(packed, vectors)["features"]["emb"] == \
        [np.float32(0.1).item(), 0.0, 2.0]


def test_split_by_request_hash():
    lists = [(f"r{i}", "clicked", []) for i in range(200)] + [("j1", "judged", [])]
    expected = {split: [] for split in SPLITS}
    for lst in lists:
        expected[split_of(lst[0], lst[1])].append(lst[0])
    assert expected["judged"] == ["j1"] and 5 <= len(expected["eval"]) <= 40
    with beam_pipeline() as p:
        splits = p | beam.Create(lists) | SplitByRequestHash()
        for split in SPLITS:
            assert_that(splits[split] | f"Id_{split}" >> beam.Map(lambda l: l[0]),
                        equal_to(expected[split]), label=split)


def test_split_is_stable_and_about_ninety_ten():
    ids = [f"request-{i}" for i in range(5000)]
    first = [split_of(i, "clicked") for i in ids]
    assert first == [split_of(i, "clicked") for i in ids]
    assert 0.08 < first.count("eval") / len(ids) < 0.12
    assert set(first) == {"train", "eval"}
