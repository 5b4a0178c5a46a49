"""Lists: the impression packing the grouping uses, dead-letter raw lines, the stable split.

    pack_impression / unpack_impression   vectors as float32 bytes while an impression is spilled
    AttachRaw           list-level dead letters → with their raw line, re-read from the source
    SplitByRequestHash  → {"train": lists, "eval": lists, "judged": lists}

A list is (request_id, kind, [impression, …] ordered by position), kind "clicked" or "judged";
partitioned.py builds them. With dask_safe (DaskRunner), outputs are routed by
portable.split_outputs.
"""
from __future__ import annotations

import array
import hashlib

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ranker.artifacts import DEAD_LETTER_DIR, EVAL, JUDGED, SPLITS, TRAIN
from ranker.features import spec as fs
from ranker.pipeline.options import DEFAULT_EVAL_FRACTION
from ranker.pipeline import parse
from ranker.pipeline.portable import split_outputs
from ranker.pipeline.read import iter_raw_lines

LISTS, TRUNCATED = "lists", "truncated"
DEAD_LETTER = DEAD_LETTER_DIR  # the output tag names the folder the dead letters are written to
CLICKED_KIND, JUDGED_KIND = "clicked", JUDGED  # a judged list goes to the judged split


# --- packing -------------------------------------------------------------------------------------

def vector_fields(spec: fs.FeatureSpec) -> tuple[tuple[str, str], ...]:
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


class AttachRaw(beam.PTransform):
    """List-level dead letters (raw None) → the same letters with their line text, each source
    file re-read once up to its last such line (they are rare; raw lines are not carried)."""

    def expand(self, letters):
        return (letters
                | "BySource" >> beam.Map(lambda letter: (letter["source"], letter))
                | "GroupBySource" >> beam.GroupByKey()
                | "AttachRaw" >> beam.ParDo(_AttachRawFn()))


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
