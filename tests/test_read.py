"""read.py: log lines from JSONL, gzip and Parquet, with their source and line number."""
from __future__ import annotations

import json
import os

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from ranker.pipeline import paths
from ranker.pipeline.read import ReadLogLines

from pipeline_helpers import beam_pipeline, write_lines


def test_read_log_lines_jsonl_gzip_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = write_lines(tmp_path / "a.jsonl", [b'{"a": 1}', b"\xff not utf-8", b""])
    packed = write_lines(tmp_path / "b.jsonl.gz", [b'{"b": 2}\r'])
    rows = [{"request_id": "p1", "position": 1, "context": {"query": "q"}},
            {"request_id": "p2", "position": 2, "context": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    with beam_pipeline() as p:
        lines = p | ReadLogLines(paths.match_inputs(str(tmp_path / "[abc].*")))
        text = (lines | beam.Filter(lambda l: not l[0].endswith(".parquet")))
        rows_out = (lines | beam.Filter(lambda l: l[0].endswith(".parquet"))
                    | beam.Map(lambda l: (os.path.basename(l[0]), l[1], json.loads(l[2]))))
        assert_that(text, equal_to([(str(plain), 1, b'{"a": 1}'),
                                    (str(plain), 2, b"\xff not utf-8"),
                                    (str(plain), 3, b""), (str(packed), 1, b'{"b": 2}')]),
                    label="text")
        assert_that(rows_out, equal_to([("c.parquet", 1, rows[0]),
                                        ("c.parquet", 2, {"request_id": "p2", "position": 2})]),
                    label="parquet")
