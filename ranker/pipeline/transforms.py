"""The preprocess job's composite PTransforms: read → parse → group → split → write, + stats.

Each transform is small, labelled and tested on its own (tests/test_pipeline.py). Elements:

    ReadLogLines        → (source, line_number, raw_bytes)
    ParseImpressions    → .valid: (request_id, (source, line_number, raw, impression))
                          .dead_letter: dead-letter dicts (parse.dead_letter)
    GroupIntoLists      → .lists: (request_id, kind, [impression, …] ordered by position)
                          .dead_letter: list-level rejections (duplicate_position, …)
    SplitByRequestHash  → {"train": lists, "eval": lists, "judged": lists}
    WriteElwc           → gzip TFRecords of serialized ELWCs
    ComputeVocabularies → DIR/vocab/<feature>.txt (most frequent first)
    ComputeStats        → one JSON-ready dict (counts, CTR by position × device)

Cost notes (why the code looks the way it does; per impression, this 2-core machine):
- The FnApiRunner decodes and re-encodes every value crossing a GroupByKey, and Beam's generic
  coder needs ~15 µs for a nested impression dict; grouped values are marshal-packed bytes
  (~2 µs), pre-grouped per bundle so that request-ordered logs shuffle ~1 element per request.
- Counting (stats, vocabularies) is done in-bundle (CountInBundle) and combined afterwards: a
  combiner call per impression and per feature would cost more than the counting.
- Files are read in chunks that are reshuffled before being split into lines, so parsing spreads
  over workers when the runner has several (`--direct_num_workers=N
  --direct_running_mode=multi_processing`). Counters are summed per bundle.
- What remains is mostly build_elwc (~50 µs) and parse_line (~12 µs); see
  benchmarks/bench_preprocess.py.
"""
from __future__ import annotations

import array
import collections
import functools
import gc
import gzip
import hashlib
import json
import marshal
import os
import sys
from typing import Iterator, Sequence, Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from ranker.features import spec as fs
from ranker.pipeline import parse

NAMESPACE = "ranker.preprocess"

VALID, LISTS, DEAD_LETTER = "valid", "lists", "dead_letter"
CLICKED_KIND, JUDGED_KIND = "clicked", "judged"
TRAIN, EVAL, JUDGED = "train", "eval", "judged"
SPLITS = (TRAIN, EVAL, JUDGED)
DEFAULT_EVAL_FRACTION = 0.1
UNKNOWN_DEVICE = "unknown"  # the device judged lines carry; never counted as an unseen device

# Supported inputs, by how a file name ends.
JSONL_SUFFIXES = (".jsonl", ".ndjson")
GZIP_SUFFIXES = tuple(s + ".gz" for s in JSONL_SUFFIXES)
PARQUET_SUFFIXES = (".parquet", ".parq")
CHUNK_LINES = 2000
PROGRESS_EVERY = 250_000  # lines read / impressions written between progress lines on stderr


# --- reading -------------------------------------------------------------------------------------

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
            yield dumps({k: v for k, v in row.items() if v is not None}).encode("utf-8")


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "timestamp"):  # datetime: unix seconds, as the log schema says
        return int(value.timestamp())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return float(value)  # Decimal and friends


class _ReadChunksFn(beam.DoFn):
    """ReadableFile → (source, first_line_number, [raw, …]): cheap elements to reshuffle."""

    def __init__(self, chunk_lines: int):
        self._chunk_lines = chunk_lines
        self._lines_read = Metrics.counter(NAMESPACE, "lines_read")

    def process(self, readable: fileio.ReadableFile):
        path = readable.metadata.path
        with readable.open(mime_type="application/octet-stream",
                           compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            chunk: list[bytes] = []
            first = 1
            for raw in iter_raw_lines(fh, path):
                chunk.append(raw)
                if len(chunk) == self._chunk_lines:
                    self._lines_read.inc(len(chunk))
                    yield path, first, chunk
                    first += len(chunk)
                    chunk = []
                    if (first - 1) % PROGRESS_EVERY < self._chunk_lines:
                        progress(f"read {first - 1} lines of {os.path.basename(path)}")
            if chunk:
                self._lines_read.inc(len(chunk))
                yield path, first, chunk


def _explode(chunk: tuple[str, int, list[bytes]]) -> Iterator[tuple[str, int, bytes]]:
    source, first, lines = chunk
    for offset, raw in enumerate(lines):
        yield source, first + offset, raw


class ReadLogLines(beam.PTransform):
    """Log files → (source, line_number, raw_bytes), line numbers from 1 (Parquet: row index + 1).

    `patterns` is a glob or a list of globs/paths (preprocess passes the files it validated).
    `spread` reshuffles chunks of lines so that several workers parse one file; with a single
    worker it only costs a pass over the data, so preprocess turns it off then.
    """

    def __init__(self, patterns: str | Sequence[str], chunk_lines: int = CHUNK_LINES,
                 spread: bool = True):
        super().__init__()
        self._patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self._chunk_lines = chunk_lines
        self._spread = spread

    def expand(self, pbegin):
        chunks = (
            pbegin
            | "Patterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "ReadMatches" >> fileio.ReadMatches()
            | "ReadChunks" >> beam.ParDo(_ReadChunksFn(self._chunk_lines))
        )
        if self._spread:  # a gzip file is read by one worker; its lines need not be parsed by one
            chunks = chunks | "SpreadChunks" >> beam.Reshuffle()
        return chunks | "SplitLines" >> beam.FlatMap(_explode)


def progress(message: str) -> None:
    """A progress line on stderr (worker processes share the job's stderr)."""
    print(f"[preprocess] {message}", file=sys.stderr, flush=True)


# --- process-wide tuning -------------------------------------------------------------------------

_FROZEN_AFTER: set[str] = set()


def freeze_heap(after: str) -> None:
    """Moves every object alive now (TensorFlow, Beam, the spec) out of the GC's reach.

    The job allocates millions of short-lived dicts; each full collection would otherwise walk
    the ~1M objects that importing TensorFlow leaves behind (measured: GC time 1.4 s → 0.6 s
    on 100k impressions, about 5% of the job).
    Called from DoFn.setup once the worker has imported what it needs; `after` names that
    import, so a process freezes (after a collection) at most once per import.
    """
    if after in _FROZEN_AFTER:
        return
    _FROZEN_AFTER.add(after)
    gc.collect()
    gc.freeze()


# --- parsing -------------------------------------------------------------------------------------

class _BundleCounts:
    """Counters summed locally and reported once per bundle (a Metrics call per element costs)."""

    def __init__(self, *names: str):
        self._counters = {name: Metrics.counter(NAMESPACE, name) for name in names}
        self.reset()

    def reset(self):
        self.counts = collections.Counter()

    def flush(self):
        for name, value in self.counts.items():
            if value:
                self._counters[name].inc(value)
        self.reset()


_DEAD_COUNTERS = tuple(f"dead_letter_{reason}" for reason in parse.REASONS)


class _ParseFn(beam.DoFn):
    def __init__(self, spec: fs.FeatureSpec):
        self._spec = spec

    def setup(self):
        self._counts = _BundleCounts("lines_parsed", *_DEAD_COUNTERS)
        freeze_heap(after="beam")

    def process(self, element):
        source, line_number, raw = element
        impression, dead = parse.parse_line(raw, self._spec, source, line_number)
        if impression is None:
            self._counts.counts["dead_letter_" + dead["reason"]] += 1
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead)
        else:
            self._counts.counts["lines_parsed"] += 1
            yield impression[fs.REQUEST_ID], (source, line_number, raw, impression)

    def finish_bundle(self):
        self._counts.flush()


class ParseImpressions(beam.PTransform):
    """(source, line, raw) → tagged outputs `valid` (keyed by request_id) and `dead_letter`."""

    def __init__(self, spec: fs.FeatureSpec):
        super().__init__()
        self._spec = spec

    def expand(self, lines):
        return lines | "ParseLine" >> beam.ParDo(_ParseFn(self._spec)).with_outputs(
            DEAD_LETTER, main=VALID)


# --- grouping ------------------------------------------------------------------------------------

def _vector_fields(spec: fs.FeatureSpec) -> tuple[tuple[str, str], ...]:
    return tuple((parse.CONTEXT_KEY if f.scope == fs.CONTEXT else parse.FEATURES_KEY, f.name)
                 for f in spec.features if f.kind == fs.VECTOR)


def pack_impression(impression: dict, vectors: tuple[tuple[str, str], ...]) -> dict:
    """Vectors as float32 bytes for the shuffle: the ELWC stores float32 anyway, and a list of
    Python floats costs 9 bytes a value in marshal (24 in memory) against 4. Does not mutate."""
    out = impression
    for scope, name in vectors:
        value = impression[scope].get(name)
        if value is not None:
            if out is impression:
                out = dict(impression)
            if out[scope] is impression[scope]:
                out[scope] = dict(impression[scope])
            out[scope][name] = array.array("f", value).tobytes()
    return out


def unpack_impression(impression: dict, vectors: tuple[tuple[str, str], ...]) -> dict:
    """Inverse of pack_impression, in place (on a freshly unmarshalled dict)."""
    for scope, name in vectors:
        value = impression[scope].get(name)
        if value is not None:
            floats = array.array("f")
            floats.frombytes(value)
            impression[scope][name] = floats.tolist()
    return impression


class _PreGroupFn(beam.DoFn):
    """Pre-groups each bundle's impressions by request, packed with marshal.

    Logs are mostly written a request at a time, so this sends about one shuffle element per
    request instead of one per line; the buffer is flushed every `max_lines` to bound memory.
    The raw line stays behind (a list-level dead letter re-reads it: they are rare, and raw
    lines would be the bulk of what the runner holds in memory for the shuffle).
    """

    def __init__(self, vectors: tuple[tuple[str, str], ...], max_lines: int = 20_000):
        self._vectors = vectors
        self._max_lines = max_lines

    def start_bundle(self):
        self._buffer: dict[str, list] = {}
        self._lines = 0

    def process(self, keyed):
        request_id, (source, line, _raw, impression) = keyed
        entry = (source, line, pack_impression(impression, self._vectors))
        entries = self._buffer.get(request_id)
        if entries is None:
            self._buffer[request_id] = [entry]
        else:
            entries.append(entry)
        self._lines += 1
        if self._lines >= self._max_lines:
            yield from self._flush()

    def finish_bundle(self):
        for keyed in self._flush():
            yield GlobalWindows.windowed_value(keyed)

    def _flush(self):
        buffer, self._buffer, self._lines = self._buffer, {}, 0
        for request_id, entries in buffer.items():
            yield request_id, marshal.dumps(entries)


class _OrderListFn(beam.DoFn):
    """One request's impressions → one ordered list, or dead letters for list-level faults."""

    def __init__(self, max_list_size: int, vectors: tuple[tuple[str, str], ...]):
        self._max_list_size = max_list_size
        self._vectors = vectors

    def setup(self):
        self._counts = _BundleCounts("impressions_valid", "lists_clicked", "lists_judged",
                                     *_DEAD_COUNTERS)

    def process(self, element):
        request_id, fragments = element
        located = [(source, line, None, impression)
                   for packed in fragments for source, line, impression in marshal.loads(packed)]
        located.sort(key=_input_order)
        kept, dead = order_list(located, self._max_list_size)
        for letter in dead:
            self._counts.counts["dead_letter_" + letter["reason"]] += 1
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)
        if kept:
            kind = JUDGED_KIND if parse.is_judged(kept[0]) else CLICKED_KIND
            self._counts.counts["impressions_valid"] += len(kept)
            self._counts.counts["lists_" + kind] += 1
            yield request_id, kind, [unpack_impression(i, self._vectors) for i in kept]

    def finish_bundle(self):
        self._counts.flush()


def _input_order(entry: tuple) -> tuple:
    return entry[3][fs.POSITION], entry[0], entry[1]


def order_list(located: list[tuple], max_list_size: int) -> tuple[list[dict], list[dict]]:
    """Located impressions sorted by (position, source, line) → (kept impressions, dead letters).

    The first line at a position wins (input order); then a list mixing judged and click lines,
    or longer than max_list_size, is rejected whole: a partial list would bias the model.
    Entries are (source, line, raw or None, impression); dead letters carry that raw.
    """
    kept, dead = [], []
    last_position = None
    for source, line, raw, impression in located:
        position = impression[fs.POSITION]
        if position == last_position:
            first = kept[-1]
            dead.append(parse.dead_letter(source, line, parse.DUPLICATE_POSITION,
                                          f"position {position} of request "
                                          f"{impression[fs.REQUEST_ID]!r} already taken by "
                                          f"{first[0]}:{first[1]}", raw))
            continue
        kept.append((source, line, raw, impression))
        last_position = position
    judged = sum(1 for entry in kept if parse.is_judged(entry[3]))
    reason = detail = None
    if 0 < judged < len(kept):
        reason = parse.MIXED_LABELS
        detail = f"request mixes {judged} judged lines with {len(kept) - judged} click lines"
    elif len(kept) > max_list_size:
        reason = parse.LIST_TOO_LONG
        detail = f"request has {len(kept)} impressions, max_list_size is {max_list_size}"
    if reason:
        dead.extend(parse.dead_letter(s, n, reason, detail, r) for s, n, r, _ in kept)
        return [], dead
    return [entry[3] for entry in kept], dead


class _AttachRawFn(beam.DoFn):
    """(source, dead letters without raw) → the letters with their line text, re-read once."""

    def process(self, source_letters):
        source, letters = source_letters
        wanted = {letter["line"]: letter for letter in letters}
        last = max(wanted)
        with FileSystems.open(source, mime_type="application/octet-stream",
                              compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            for number, raw in enumerate(iter_raw_lines(fh, source), 1):
                letter = wanted.pop(number, None)
                if letter is not None:
                    yield dict(letter, raw=parse.raw_text(raw))
                if number >= last:
                    break
        for letter in wanted.values():  # the file shrank since it was read
            yield dict(letter, raw="")


class GroupIntoLists(beam.PTransform):
    """Valid impressions → {"lists": (request_id, kind, impressions ordered by position),
    "dead_letter": list-level rejections}. Vectors come out as float32 values (as in the ELWC)."""

    def __init__(self, spec: fs.FeatureSpec):
        super().__init__()
        self._max_list_size = spec.max_list_size
        self._vectors = _vector_fields(spec)

    def expand(self, valid):
        grouped = (
            valid
            | "PreGroup" >> beam.ParDo(_PreGroupFn(self._vectors)).with_output_types(
                Tuple[str, bytes])
            | "GroupByRequest" >> beam.GroupByKey()
            | "OrderAndCheck" >> beam.ParDo(
                _OrderListFn(self._max_list_size, self._vectors)).with_outputs(
                DEAD_LETTER, main=LISTS)
        )
        dead = (
            grouped[DEAD_LETTER]
            | "BySource" >> beam.Map(lambda letter: (letter["source"], letter))
            | "GroupBySource" >> beam.GroupByKey()
            | "AttachRaw" >> beam.ParDo(_AttachRawFn())
        )
        return {LISTS: grouped[LISTS], DEAD_LETTER: dead}


# --- splitting -----------------------------------------------------------------------------------

def split_of(request_id: str, kind: str, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> str:
    """Stable across runs, machines and Python versions: md5 of the id, not hash()."""
    if kind == JUDGED_KIND:
        return JUDGED
    digest = hashlib.md5(request_id.encode("utf-8")).digest()
    return EVAL if int.from_bytes(digest[:8], "big") < eval_fraction * 2.0**64 else TRAIN


def _partition(lst: tuple, num_partitions: int, eval_fraction: float) -> int:
    return SPLITS.index(split_of(lst[0], lst[1], eval_fraction))


class SplitByRequestHash(beam.PTransform):
    """Lists → {"train", "eval", "judged"}: ~eval_fraction of click requests to eval."""

    def __init__(self, eval_fraction: float = DEFAULT_EVAL_FRACTION):
        super().__init__()
        self._eval_fraction = eval_fraction

    def expand(self, lists):
        parts = lists | "Partition" >> beam.Partition(_partition, len(SPLITS), self._eval_fraction)
        return dict(zip(SPLITS, parts))


# --- writing -------------------------------------------------------------------------------------

def serialize_list(lst: tuple, spec: fs.FeatureSpec) -> bytes:
    """The ELWC bytes of one list; deterministic so that a re-run writes identical records."""
    from ranker.pipeline.elwc import build_elwc  # TensorFlow protos: imported where used

    return build_elwc(lst[2], spec).SerializeToString(deterministic=True)


class _SerializeFn(beam.DoFn):
    def __init__(self, spec: fs.FeatureSpec):
        self._spec = spec

    def setup(self):
        from ranker.pipeline import elwc  # noqa: F401  (imports TensorFlow before the freeze)

        freeze_heap(after="tensorflow")
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

    def __init__(self, spec: fs.FeatureSpec, file_path_prefix: str):
        super().__init__()
        self._spec = spec
        self._prefix = file_path_prefix

    def expand(self, lists):
        return (
            lists
            | "Serialize" >> beam.ParDo(_SerializeFn(self._spec)).with_output_types(bytes)
            | "WriteTFRecord" >> beam.io.WriteToTFRecord(
                self._prefix, file_name_suffix=".tfrecord.gz",
                compression_type=CompressionTypes.GZIP)
        )


class WriteDeadLetters(beam.PTransform):
    """Dead letters → `<prefix>-SSSSS-of-NNNNN.jsonl`, one JSON object a line."""

    def __init__(self, file_path_prefix: str):
        super().__init__()
        self._prefix = file_path_prefix

    def expand(self, dead_letters):
        return (
            dead_letters
            | "ToJson" >> beam.Map(functools.partial(json.dumps, ensure_ascii=False,
                                                     sort_keys=True))
            | "WriteJsonl" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )


# --- counting ------------------------------------------------------------------------------------

class CountInBundle(beam.DoFn):
    """In-mapper combining: `count_fn(counter, element, *args)` fills a Counter per bundle.

    Emits the Counter as one dict per bundle (for CombineGlobally(SumCounts)), or, with
    per_key, each (key, count) pair (for CombinePerKey(sum)). A per-element combiner call costs
    more than the counting itself, and the job counts a few things per impression.
    """

    def __init__(self, count_fn, *args, per_key: bool = False, max_keys: int = 100_000):
        self._count_fn = count_fn
        self._args = args
        self._per_key = per_key
        self._max_keys = max_keys

    def start_bundle(self):
        self._counts = collections.Counter()

    def process(self, element):
        self._count_fn(self._counts, element, *self._args)
        if len(self._counts) >= self._max_keys:
            yield from self._flush()

    def finish_bundle(self):
        for out in self._flush():
            yield GlobalWindows.windowed_value(out)

    def _flush(self):
        counts, self._counts = self._counts, collections.Counter()
        if self._per_key:
            yield from counts.items()
        elif counts:
            yield dict(counts)


class SumCounts(beam.CombineFn):
    """Sums dicts of counts key by key: every statistic is a count until the final formatting."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counts):
        for key, value in counts.items():
            accumulator[key] = accumulator.get(key, 0) + value
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


# --- vocabularies --------------------------------------------------------------------------------

class _TieBreak:
    """Reverses string order so that Top (largest first) lists equal counts by ascending value."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __lt__(self, other):
        return self.value > other.value

    def __gt__(self, other):
        return self.value < other.value

    def __eq__(self, other):
        return self.value == other.value


def _rank_key(value_count: tuple[str, int]) -> tuple:
    return value_count[1], _TieBreak(value_count[0])


def _count_values(counts: collections.Counter, lst: tuple,
                  features: tuple[tuple[str, str], ...]) -> None:
    """(feature, value) per impression (context values too); devices of click lists only."""
    _, kind, impressions = lst
    for impression in impressions:
        for name, scope in features:
            value = impression[scope].get(name)
            if value:
                counts[(name, value)] += 1
        if kind == CLICKED_KIND:
            counts[(fs.DEVICE, impression[fs.DEVICE])] += 1


def _usable(entry: tuple[tuple[str, str], int]) -> bool:
    """One value a line: empty values and values with line breaks stay out-of-vocabulary."""
    value = entry[0][1]
    return bool(value) and "\n" not in value and "\r" not in value


def _format_vocabulary(ranked: list[tuple[str, int]]) -> list[str]:
    return [value for value, _ in sorted(ranked, key=lambda vc: (-vc[1], vc[0]))]


_ALL = 2**31 - 1  # "no cap" for Top: the heap then simply holds every value


def write_text_file(path: str, text: str) -> str:
    """One small file written whole (idempotent, so a retried bundle rewrites the same bytes)."""
    with FileSystems.create(path, mime_type="text/plain",
                            compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(text.encode("utf-8"))
    return path


def _write_vocabulary(feature_values: tuple[str, list[str]], vocab_dir: str) -> tuple[str, int]:
    feature, values = feature_values
    lines = "".join(value + "\n" for value in values)
    write_text_file(os.path.join(vocab_dir, f"{feature}.txt"), lines)
    return feature, len(values)


def _ranked(feature_top: tuple[str, list], caps: dict[str, int]) -> tuple[str, list[str]]:
    feature, value_counts = feature_top
    return feature, _format_vocabulary(value_counts)[:caps[feature]]


class ComputeVocabularies(beam.PTransform):
    """Lists → DIR/vocab/<feature>.txt per vocabulary categorical, plus device_type.

    Values are ranked by how many impressions carry them (ties by value, for determinism) and
    capped at the feature's vocabulary_size when set (Top keeps only that many per bundle).
    Devices come from click lists only: judged lists carry no position bias to learn.
    Returns (feature, [values]) per vocabulary that has values; a vocabulary without values
    gets no file here (preprocess writes it empty).
    """

    def __init__(self, spec: fs.FeatureSpec, vocab_dir: str):
        super().__init__()
        vocab_features = [f for f in spec.features if f.uses_vocabulary]
        self._features = tuple(
            (f.name, parse.CONTEXT_KEY if f.scope == fs.CONTEXT else parse.FEATURES_KEY)
            for f in vocab_features)
        self._caps = {f.name: f.vocabulary_size or _ALL for f in vocab_features}
        self._caps[fs.DEVICE] = _ALL
        self._vocab_dir = vocab_dir

    @property
    def names(self) -> list[str]:
        return list(self._caps)

    def expand(self, lists):
        vocabularies = (
            lists
            | "CountInBundle" >> beam.ParDo(CountInBundle(_count_values, self._features,
                                                          per_key=True))
            | "Count" >> beam.CombinePerKey(sum)
            | "Usable" >> beam.Filter(_usable)
            | "ByFeature" >> beam.Map(lambda entry: (entry[0][0], (entry[0][1], entry[1])))
            | "Top" >> beam.combiners.Top.PerKey(max(self._caps.values()), key=_rank_key)
            | "Rank" >> beam.Map(_ranked, self._caps)
        )
        _ = vocabularies | "Write" >> beam.Map(_write_vocabulary, self._vocab_dir)
        return vocabularies


# --- stats ---------------------------------------------------------------------------------------

def _count_line(counts: collections.Counter, line) -> None:
    counts[("lines_read",)] += 1


def _count_dead_letter(counts: collections.Counter, dead: dict) -> None:
    counts[("dead_letter", dead["reason"])] += 1


def _count_list(counts: collections.Counter, lst: tuple, split: str) -> None:
    _, kind, impressions = lst
    counts[("requests", split)] += 1
    counts[("impressions", split)] += len(impressions)
    for impression in impressions:
        device = impression[fs.DEVICE]
        if kind == CLICKED_KIND:
            position = impression[fs.POSITION]
            counts[("shown", device, position)] += 1
            if impression[fs.CLICKED]:
                counts[("clicked", device, position)] += 1
        else:
            counts[("judged_device", device)] += 1


def format_stats(counts: dict) -> dict:
    """Summed counts → the stats.json layout of SPEC.md (CTR positions in numeric order)."""
    by_reason = {reason: counts.get(("dead_letter", reason), 0) for reason in parse.REASONS}
    requests = {split: counts.get(("requests", split), 0) for split in SPLITS}
    impressions = {split: counts.get(("impressions", split), 0) for split in SPLITS}
    cells = sorted((key[1], key[2]) for key in counts if key[0] == "shown")
    shown: dict = {}
    clicked: dict = {}
    ctr: dict = {}
    for device, position in cells:
        n = counts[("shown", device, position)]
        c = counts.get(("clicked", device, position), 0)
        shown.setdefault(device, {})[str(position)] = n
        clicked.setdefault(device, {})[str(position)] = c
        ctr.setdefault(device, {})[str(position)] = c / n
    click_devices = set(shown)
    unknown_device = sum(n for key, n in counts.items()
                         if key[0] == "judged_device" and key[1] not in click_devices
                         and key[1] != UNKNOWN_DEVICE)
    return {
        "lines_read": counts.get(("lines_read",), 0),
        "impressions_valid": sum(impressions.values()),
        "dead_letter": {"total": sum(by_reason.values()), "by_reason": by_reason},
        "requests": requests,
        "impressions": impressions,
        "unknown_device": unknown_device,
        "ctr_by_position_device": ctr,
        "impressions_by_position_device": shown,
        "clicks_by_position_device": clicked,
    }


def _report_unknown_devices(stats: dict) -> dict:
    Metrics.counter(NAMESPACE, "unknown_device").inc(stats["unknown_device"])
    return stats


class ComputeStats(beam.PTransform):
    """{"lines", "dead_letter", "train", "eval", "judged"} → one stats dict (format_stats).

    `lines` is what ReadLogLines produced (counted independently of parsing, so the invariant
    lines_read == impressions_valid + dead_letter.total is a real check). An unknown device is
    a judged-list device never seen in click lists (the model maps it to its OOV id); the
    placeholder "unknown" of judged lines is not counted.
    """

    def expand(self, inputs: dict):
        partials = [
            inputs["lines"] | "CountLines" >> beam.ParDo(CountInBundle(_count_line)),
            inputs[DEAD_LETTER] | "CountDeadLetters" >> beam.ParDo(
                CountInBundle(_count_dead_letter)),
        ]
        for split in SPLITS:
            partials.append(inputs[split] | f"Count_{split}" >> beam.ParDo(
                CountInBundle(_count_list, split)))
        return (
            partials
            | "AllCounts" >> beam.Flatten()
            | "Sum" >> beam.CombineGlobally(SumCounts())
            | "Format" >> beam.Map(format_stats)
            | "UnknownDevices" >> beam.Map(_report_unknown_devices)
        )


class WriteJson(beam.PTransform):
    """A single-element PCollection → one JSON file at `path` exactly."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pcoll):
        return pcoll | "WriteFile" >> beam.Map(_write_json, self._path)


def _write_json(obj, path: str) -> str:
    return write_text_file(path, json.dumps(obj))
