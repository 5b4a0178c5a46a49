"""Reading impression logs: file formats (JSONL, gzip, Parquet), as raw lines in chunks.

    read_chunks(path, shard, shards)   → (first_line_number, [raw_bytes, …]) (partitioned.py)
    iter_raw_lines(fh, path)           → raw lines of an open file

iter_raw_lines is also how list-level dead letters get their raw line back (lists.py) and how
the benchmark reads logs.
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ranker.pipeline.runtime import PROGRESS_EVERY, progress

# Supported inputs, by how a file name ends.
JSONL_SUFFIXES = (".jsonl", ".ndjson")
GZIP_SUFFIXES = tuple(s + ".gz" for s in JSONL_SUFFIXES)
PARQUET_SUFFIXES = (".parquet", ".parq")
CHUNK_LINES = 2000
UTF8_BOM = b"\xef\xbb\xbf"


def log_format(path: str) -> str | None:
    """'jsonl', 'gzip' or 'parquet' by file name; None for anything else."""
    name = path.lower()
    if name.endswith(GZIP_SUFFIXES):
        return "gzip"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def iter_raw_lines(fh, path: str) -> Iterator[bytes]:
    """Raw lines (bytes, line ending removed) of an open binary file; Parquet rows as JSON text.

    Bytes, not text, so that a non-UTF-8 line becomes a dead letter instead of failing the file.
    """
    fmt = log_format(path)
    if fmt == "parquet":
        yield from _parquet_lines(fh)
        return
    stream = gzip.GzipFile(fileobj=fh, mode="rb") if fmt == "gzip" else fh
    first = next(stream, None)
    if first is None:
        return
    yield first.removeprefix(UTF8_BOM).rstrip(b"\r\n")  # a BOM marks the file, not the line
    for line in stream:
        yield line.rstrip(b"\r\n")


def _parquet_lines(fh) -> Iterator[bytes]:
    """Each row as the JSON line it stands for: nulls at the top level mean 'absent'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.ParquetFile(fh)
    maps = [f.name for f in table.schema_arrow if pa.types.is_map(f.type)]
    dumps = json.JSONEncoder(default=_json_default, separators=(",", ":"),
                             ensure_ascii=False).encode
    for batch in table.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            for name in maps:
                if row.get(name) is not None:
                    row[name] = dict(row[name])
            # surrogateescape: a binary column that is not UTF-8 keeps its bytes, so the line
            # becomes an invalid_utf8 dead letter instead of an id merged by replacement chars
            yield dumps({k: v for k, v in row.items() if v is not None}).encode(
                "utf-8", errors="surrogateescape")


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="surrogateescape")
    if hasattr(value, "timestamp"):  # datetime: unix seconds, as the log schema says
        return int(value.timestamp())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return float(value)  # Decimal and friends


def read_chunks(path: str, shard: int = 0, shards: int = 1,
                chunk_lines: int = CHUNK_LINES) -> Iterator[tuple[int, list[bytes]]]:
    """(first_line_number, [raw, …]) for the file's chunks number shard, shard + shards, …

    `path` is an exact path (one of preprocess's match_inputs results): opened as named, never
    matched again as a pattern. Line numbers count from 1 (Parquet: row index + 1). With shards > 1,
    several tasks read one file and each parses every shards-th chunk: a gzip stream cannot be
    split, but its parsing can.
    """
    with FileSystems.open(path, mime_type="application/octet-stream",
                          compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        chunk: list[bytes] = []
        first, number = 1, 0
        for raw in iter_raw_lines(fh, path):
            chunk.append(raw)
            if len(chunk) == chunk_lines:
                if number % shards == shard:
                    yield first, chunk
                first, number, chunk = first + len(chunk), number + 1, []
                if (first - 1) % PROGRESS_EVERY < chunk_lines and shard == 0:
                    progress(f"read {first - 1} lines of {os.path.basename(path)}")
        if chunk and number % shards == shard:
            yield first, chunk
