"""lists.py on its own (TestPipeline + assert_that): packing impressions for the spill and the
stable train/eval split (grouping into lists: test_partitioned.py)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from ranker.pipeline import parse
from ranker.pipeline.lists import (
    SPLITS, SplitByRequestHash, pack_impression, split_of, unpack_impression, vector_fields)

from pipeline_helpers import SPEC, beam_pipeline, dumps, record


def test_packing_keeps_vectors_as_float32():
    impression, _ = parse.parse_line(dumps(record(features={"emb": [0.1, 1e-50, 2]})), SPEC, "a", 1)
    vectors = vector_fields(SPEC)
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
