"""summaries.py: vocabularies by frequency and the job's stats."""
from __future__ import annotations


import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from ranker.features import spec as fs
from ranker.pipeline import parse
from ranker.pipeline.summaries import ComputeStats, ComputeVocabularies

from pipeline_helpers import SPEC, beam_pipeline


def test_compute_vocabularies_by_frequency(tmp_path):
    def imp(query, device, brand="b"):
        return {"device_type": device, "context": {"query": query}, "features": {"brand": brand}}

    lists = [
        ("r1", "clicked", [imp("b", "mobile"), imp("b", "mobile"), imp("a", "desktop")]),
        ("r2", "clicked", [imp("a", "desktop"), imp("c", "mobile"), imp("d", "tablet")]),
        ("r3", "clicked", [imp("c", "mobile"), imp("", "tablet"), imp("e\nf", "tablet")]),
        ("j1", "judged", [imp("z", "unknown"), imp("z", "unknown"), imp("z", "unknown")]),
    ]
    vocab_dir = tmp_path / "vocab"
    with beam_pipeline() as p:
        vocabularies = p | beam.Create(lists) | ComputeVocabularies(SPEC, str(vocab_dir))
        # query: z 3, a/b/c 2 each (ties by value), d 1, capped at vocabulary_size 3
        assert_that(vocabularies, equal_to([("query", ["z", "a", "b"]),
                                            ("device_type", ["mobile", "tablet", "desktop"])]))
    assert fs.read_vocabulary(str(vocab_dir / "query.txt")) == ["z", "a", "b"]
    assert fs.read_vocabulary(str(vocab_dir / "device_type.txt")) == ["mobile", "tablet", "desktop"]
    assert not (vocab_dir / "brand.txt").exists()  # hashed: no vocabulary


def test_compute_stats():
    def imp(position, device, clicked):
        return {"position": position, "device_type": device, "clicked": clicked}

    train = [("r1", "clicked", [imp(1, "desktop", 1), imp(2, "desktop", 0)]),
             ("r2", "clicked", [imp(1, "desktop", 0), imp(2, "desktop", 0)])]
    evals = [("r3", "clicked", [imp(1, "mobile", 1)])]
    judged = [("j1", "judged", [imp(1, "unknown", None), imp(2, "watch", None),
                                imp(3, "mobile", None)])]
    dead = [{"reason": parse.INVALID_JSON}, {"reason": parse.MIXED_LABELS},
            {"reason": parse.INVALID_JSON}]
    with beam_pipeline() as p:
        stats = {"lines_read": p | "Lines" >> beam.Create([4, 7]),
                 "dead_letter": p | "Dead" >> beam.Create(dead),
                 "train": p | "Train" >> beam.Create(train),
                 "eval": p | "Eval" >> beam.Create(evals),
                 "judged": p | "Judged" >> beam.Create(judged)} | ComputeStats()

        def check(outputs):
            (s,) = outputs
            assert s["lines_read"] == 11 and s["impressions_valid"] == 8
            assert s["dead_letter"]["total"] == 3
            assert s["dead_letter"]["by_reason"][parse.INVALID_JSON] == 2
            assert s["dead_letter"]["by_reason"][parse.MIXED_LABELS] == 1
            assert s["requests"] == {"train": 2, "eval": 1, "judged": 1}
            assert s["impressions"] == {"train": 4, "eval": 1, "judged": 3}
            assert s["ctr_by_position_device"] == {"desktop": {"1": 0.5, "2": 0.0},
                                                   "mobile": {"1": 1.0}}
            assert s["impressions_by_position_device"]["desktop"] == {"1": 2, "2": 2}
            assert s["unknown_device"] == 1  # "watch"; "unknown" and "mobile" are not counted

        assert_that(stats, check)
