"""Writing outputs: lists as ELWC TFRecords, dead letters as JSONL, single JSON/text files.

    WriteElwc           → gzip TFRecords of serialized ELWCs
    WriteDeadLetters    → JSONL, one dead letter a line
    WriteJson           → one JSON file (stats)

With `whole_shards` N > 0 the files are written by portable.WriteShardsWhole (N shards, each
file written whole in process()) instead of Beam's sinks, whose files DaskRunner leaves empty.
Records are encoded by wire.py (~5 µs an impression; protobuf's build_elwc took ~18).
"""
from __future__ import annotations

import functools
import json
import os

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from ranker.artifacts import RECORD_SUFFIX
from ranker.features import spec as fs
from ranker.features.wire import encode_elwc
from ranker.pipeline.portable import WriteShardsWhole, write_line
from ranker.pipeline.runtime import PROGRESS_EVERY, freeze_heap, progress


def serialize_list(lst: tuple, spec: fs.FeatureSpec) -> bytes:
    """The ELWC bytes of one list: build_elwc(…).SerializeToString(deterministic=True), encoded
    without protobuf (wire.py: ~4× faster, and workers need not import TensorFlow)."""
    return encode_elwc(lst[2], spec)


class _SerializeFn(beam.DoFn):
    def __init__(self, spec: fs.FeatureSpec):
        self._spec = spec

    def setup(self):
        freeze_heap(after="beam")
        self._impressions = 0

    def process(self, lst):
        yield serialize_list(lst, self._spec)
        before = self._impressions
        self._impressions += len(lst[2])
        if before // PROGRESS_EVERY != self._impressions // PROGRESS_EVERY:
            progress(f"wrote ELWCs of {self._impressions // PROGRESS_EVERY * PROGRESS_EVERY}+ "
                     f"impressions (pid {os.getpid()})")


class WriteElwc(beam.PTransform):
    """Lists → `<file_path_prefix>-SSSSS-of-NNNNN.tfrecord.gz` of serialized ELWCs."""

    def __init__(self, spec: fs.FeatureSpec, file_path_prefix: str, whole_shards: int = 0):
        super().__init__()
        self._spec = spec
        self._prefix = file_path_prefix
        self._whole_shards = whole_shards

    def expand(self, lists):
        records = lists | "Serialize" >> beam.ParDo(
            _SerializeFn(self._spec)).with_output_types(bytes)
        if self._whole_shards:
            return records | "WriteWhole" >> WriteShardsWhole(
                self._prefix, RECORD_SUFFIX, self._whole_shards, _write_tfrecord,
                CompressionTypes.GZIP)
        return records | "WriteTFRecord" >> beam.io.WriteToTFRecord(
            self._prefix, file_name_suffix=RECORD_SUFFIX, compression_type=CompressionTypes.GZIP)


def _write_tfrecord(fh, record: bytes) -> None:
    _TFRecordUtil.write_record(fh, record)  # Beam's own TFRecord framing (WriteToTFRecord's)


DEAD_LETTER_SUFFIX = ".jsonl"


class WriteDeadLetters(beam.PTransform):
    """Dead letters → `<prefix>-SSSSS-of-NNNNN.jsonl`, one JSON object a line."""

    def __init__(self, file_path_prefix: str, whole_shards: int = 0):
        super().__init__()
        self._prefix = file_path_prefix
        self._whole_shards = whole_shards

    def expand(self, dead_letters):
        lines = dead_letters | "ToJson" >> beam.Map(
            functools.partial(json.dumps, ensure_ascii=False, sort_keys=True))
        if self._whole_shards:
            return (lines
                    | "Encode" >> beam.Map(lambda line: line.encode("utf-8"))
                    | "WriteWhole" >> WriteShardsWhole(self._prefix, DEAD_LETTER_SUFFIX,
                                                       self._whole_shards, write_line))
        return lines | "WriteJsonl" >> beam.io.WriteToText(
            self._prefix, file_name_suffix=DEAD_LETTER_SUFFIX)


class WriteJson(beam.PTransform):
    """A single-element PCollection → one JSON file at `path` exactly."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pcoll):
        return pcoll | "WriteFile" >> beam.Map(_write_json, self._path)


def _write_json(obj, path: str) -> str:
    return write_text_file(path, json.dumps(obj))


def write_text_file(path: str, text: str) -> str:
    """One small file written whole (idempotent, so a retried bundle rewrites the same bytes)."""
    with FileSystems.create(path, mime_type="text/plain",
                            compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(text.encode("utf-8"))
    return path
