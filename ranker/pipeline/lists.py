"""Impressions to lists: parse lines, group them by request, order and check each list, split.

    ParseImpressions    → .valid: (request_id, (source, line_number, raw, impression))
                          .dead_letter: dead-letter dicts (parse.dead_letter)
    GroupIntoLists      → .lists: (request_id, kind, [impression, …] ordered by position)
                          .dead_letter: list-level rejections (duplicate_position, …)
                          .truncated: per truncated click list, how many impressions were cut
    SplitByRequestHash  → {"train": lists, "eval": lists, "judged": lists}

Cost notes (per impression): the FnApiRunner decodes and re-encodes every value crossing a
GroupByKey, and Beam's generic coder needs ~15 µs for a nested impression dict; grouped values
are marshal-packed bytes (~2 µs), pre-grouped per bundle so that request-ordered logs shuffle
~1 element per request. Counters are summed per bundle. parse_line costs ~12 µs; see
benchmarks/bench_preprocess.py. With dask_safe (DaskRunner), outputs are routed by
portable.split_outputs and nothing waits for the end of a bundle.
"""
from __future__ import annotations

import array
import collections
import hashlib
import marshal
from typing import Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from ranker.artifacts import DEAD_LETTER_DIR, EVAL, JUDGED, SPLITS, TRAIN
from ranker.features import spec as fs
from ranker.pipeline.options import DEFAULT_EVAL_FRACTION
from ranker.pipeline import parse
from ranker.pipeline.order import order_list
from ranker.pipeline.portable import bundle_buffer, split_outputs
from ranker.pipeline.read import iter_raw_lines
from ranker.pipeline.runtime import NAMESPACE, BufferingDoFn, freeze_heap

VALID, LISTS, TRUNCATED = "valid", "lists", "truncated"
DEAD_LETTER = DEAD_LETTER_DIR  # the output tag names the folder the dead letters are written to
CLICKED_KIND, JUDGED_KIND = "clicked", JUDGED  # a judged list goes to the judged split


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

    def __init__(self, spec: fs.FeatureSpec, dask_safe: bool = False):
        super().__init__()
        self._spec = spec
        self._dask_safe = dask_safe

    def expand(self, lines):
        return split_outputs(lines, "ParseLine", _ParseFn(self._spec), VALID, [DEAD_LETTER],
                             self._dask_safe)


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


class _PreGroupFn(BufferingDoFn):
    """Pre-groups each bundle's impressions by request, packed with marshal.

    Logs are mostly written a request at a time, so this sends about one shuffle element per
    request instead of one per line; the buffer is flushed every `max_lines` to bound memory.
    The raw line stays behind (a list-level dead letter re-reads it: they are rare, and raw
    lines would be the bulk of what the runner holds in memory for the shuffle).
    """

    MAX_LINES = 20_000

    def __init__(self, vectors: tuple[tuple[str, str], ...], max_lines: int = MAX_LINES):
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
        kept, dead, truncated = order_list(located, self._max_list_size)
        if truncated:
            yield beam.pvalue.TaggedOutput(TRUNCATED, truncated)
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
    "dead_letter": list-level rejections, "truncated": impressions cut per long click list}
    (the rules: order.py). Vectors come out as float32 values (as in the ELWC)."""

    def __init__(self, spec: fs.FeatureSpec, dask_safe: bool = False):
        super().__init__()
        self._max_list_size = spec.max_list_size
        self._vectors = _vector_fields(spec)
        self._dask_safe = dask_safe

    def expand(self, valid):
        buffer = bundle_buffer(self._dask_safe, _PreGroupFn.MAX_LINES)
        requests = (
            valid
            | "PreGroup" >> beam.ParDo(_PreGroupFn(self._vectors, buffer)).with_output_types(
                Tuple[str, bytes])
            | "GroupByRequest" >> beam.GroupByKey()
        )
        grouped = split_outputs(requests, "OrderAndCheck",
                                _OrderListFn(self._max_list_size, self._vectors), LISTS,
                                [DEAD_LETTER, TRUNCATED], self._dask_safe)
        dead = (
            grouped[DEAD_LETTER]
            | "BySource" >> beam.Map(lambda letter: (letter["source"], letter))
            | "GroupBySource" >> beam.GroupByKey()
            | "AttachRaw" >> beam.ParDo(_AttachRawFn())
        )
        return {LISTS: grouped[LISTS], DEAD_LETTER: dead, TRUNCATED: grouped[TRUNCATED]}


# --- splitting -----------------------------------------------------------------------------------

def split_of(request_id: str, kind: str, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> str:
    """Stable across runs, machines and Python versions: md5 of the id, not hash()."""
    if kind == JUDGED_KIND:
        return JUDGED
    digest = hashlib.md5(request_id.encode("utf-8")).digest()
    return EVAL if int.from_bytes(digest[:8], "big") < eval_fraction * 2.0**64 else TRAIN


class _SplitFn(beam.DoFn):
    def __init__(self, eval_fraction: float):
        self._eval_fraction = eval_fraction

    def process(self, lst):
        split = split_of(lst[0], lst[1], self._eval_fraction)
        yield lst if split == TRAIN else beam.pvalue.TaggedOutput(split, lst)


class SplitByRequestHash(beam.PTransform):
    """Lists → {"train", "eval", "judged"}: ~eval_fraction of click requests to eval."""

    def __init__(self, eval_fraction: float = DEFAULT_EVAL_FRACTION, dask_safe: bool = False):
        super().__init__()
        self._eval_fraction = eval_fraction
        self._dask_safe = dask_safe

    def expand(self, lists):
        return split_outputs(lists, "Split", _SplitFn(self._eval_fraction), TRAIN,
                             [s for s in SPLITS if s != TRAIN], self._dask_safe)
