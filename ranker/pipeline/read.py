"""Reading impression logs: file formats (JSONL, gzip, Parquet) and the ReadLogLines transform.

    ReadLogChunks       → (source, first_line_number, [raw_bytes, …])
    ReadLogLines        → (source, line_number, raw_bytes)

Files are read in chunks that are reshuffled before being split into lines, so parsing spreads
over workers when the runner has several (`--direct_num_workers=N
--direct_running_mode=multi_processing`). Where a reshuffle moves nothing (DaskRunner: a bag
keeps the partitions Create gave it), `shards` read tasks per file each keep every shards-th
chunk of it, so that several workers parse one file. iter_raw_lines is also how list-level dead
letters get their raw line back (lists.py) and how the benchmark reads logs.
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from ranker.pipeline.runtime import NAMESPACE, PROGRESS_EVERY, progress

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


class _ReadChunksFn(beam.DoFn):
    """(path, shard, shards) → (source, first_line_number, [raw, …]) for the file's chunks
    number shard, shard + shards, …: cheap elements to reshuffle."""

    def __init__(self, chunk_lines: int):
        self._chunk_lines = chunk_lines
        self._lines_read = Metrics.counter(NAMESPACE, "lines_read")

    def process(self, task: tuple[str, int, int]):
        path, shard, shards = task
        with FileSystems.open(path, mime_type="application/octet-stream",
                              compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            chunk: list[bytes] = []
            first, number = 1, 0
            for raw in iter_raw_lines(fh, path):
                chunk.append(raw)
                if len(chunk) == self._chunk_lines:
                    if number % shards == shard:
                        self._lines_read.inc(len(chunk))
                        yield path, first, chunk
                    first, number, chunk = first + len(chunk), number + 1, []
                    if (first - 1) % PROGRESS_EVERY < self._chunk_lines and shard == 0:
                        progress(f"read {first - 1} lines of {os.path.basename(path)}")
            if chunk and number % shards == shard:
                self._lines_read.inc(len(chunk))
                yield path, first, chunk


def split_lines(chunk: tuple[str, int, list[bytes]]) -> Iterator[tuple[str, int, bytes]]:
    source, first, lines = chunk
    for offset, raw in enumerate(lines):
        yield source, first + offset, raw


class ReadLogChunks(beam.PTransform):
    """Log files → (source, first_line_number, [raw_bytes, …]), line numbers from 1 (Parquet:
    row index + 1).

    `files` are exact paths (preprocess's match_inputs result): they are opened as named, never
    matched again as patterns, so `logs[1].jsonl` is read once and `logs1.jsonl` not twice.
    `spread` reshuffles files and chunks of lines so that several workers parse one file; with a
    single worker it only costs a pass over the data, so preprocess turns it off then.
    `shards` read tasks per file each read the whole file and keep every shards-th chunk.
    """

    def __init__(self, files: Sequence[str], chunk_lines: int = CHUNK_LINES,
                 spread: bool = True, shards: int = 1):
        super().__init__()
        if isinstance(files, str):
            raise TypeError("ReadLogChunks takes a list of file paths, not a pattern")
        self._tasks = [(path, shard, shards) for path in files for shard in range(shards)]
        self._chunk_lines = chunk_lines
        self._spread = spread

    def expand(self, pbegin):
        tasks = pbegin | "Files" >> beam.Create(self._tasks)
        if self._spread:
            tasks = tasks | "SpreadFiles" >> beam.Reshuffle()
        chunks = tasks | "ReadChunks" >> beam.ParDo(_ReadChunksFn(self._chunk_lines))
        if self._spread:  # a gzip file is read by one worker; its lines need not be parsed by one
            chunks = chunks | "SpreadChunks" >> beam.Reshuffle()
        return chunks


class ReadLogLines(beam.PTransform):
    """Log files → (source, line_number, raw_bytes): ReadLogChunks' chunks split into lines."""

    def __init__(self, files: Sequence[str], chunk_lines: int = CHUNK_LINES,
                 spread: bool = True):
        super().__init__()
        self._read = ReadLogChunks(files, chunk_lines, spread)

    def expand(self, pbegin):
        return pbegin | "Read" >> self._read | "SplitLines" >> beam.FlatMap(split_lines)
