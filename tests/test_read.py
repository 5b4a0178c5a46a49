"""read.py: log lines from JSONL, gzip and Parquet, with their source and line number."""
from __future__ import annotations

import json
import os

from ranker.pipeline import paths
from ranker.pipeline.read import read_chunks

from pipeline_helpers import write_lines


def _lines(path, shard=0, shards=1, chunk_lines=2):
    return [(path, first + i, raw) for first, chunk in read_chunks(path, shard, shards, chunk_lines)
            for i, raw in enumerate(chunk)]


def test_read_log_lines_jsonl_gzip_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = write_lines(tmp_path / "a.jsonl", [b'{"a": 1}', b"\xff not utf-8", b""])
    packed = write_lines(tmp_path / "b.jsonl.gz", [b'{"b": 2}\r'])
    rows = [{"request_id": "p1", "position": 1, "context": {"query": "q"}},
            {"request_id": "p2", "position": 2, "context": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    lines = [line for path in paths.match_inputs(str(tmp_path / "[abc].*")) for line in _lines(path)]
    text = [line for line in lines if not line[0].endswith(".parquet")]
    rows_out = [(os.path.basename(l[0]), l[1], json.loads(l[2])) for l in lines
                if l[0].endswith(".parquet")]
    assert text == [(str(plain), 1, b'{"a": 1}'), (str(plain), 2, b"\xff not utf-8"),
                    (str(plain), 3, b""), (str(packed), 1, b'{"b": 2}')]
    assert rows_out == [("c.parquet", 1, rows[0]),
                        ("c.parquet", 2, {"request_id": "p2", "position": 2})]


def test_read_shards_split_a_file_by_chunks_and_keep_line_numbers(tmp_path):
    path = str(write_lines(tmp_path / "a.jsonl.gz", [b"%d" % i for i in range(1, 10)]))
    shards = [_lines(path, shard, 3) for shard in range(3)]
    assert [n for _, n, _ in shards[1]] == [3, 4, 9]  # chunks of 2: #1 and #4 of 0…4
    assert sorted(line for shard in shards for line in shard) == _lines(path)
    assert [raw for _, _, raw in _lines(path)] == [b"%d" % i for i in range(1, 10)]
