"""Summaries of the lists: vocabularies (ComputeVocabularies) and stats (ComputeStats).

    ComputeVocabularies → DIR/vocab/<feature>.txt (most frequent first)
    ComputeStats        → one JSON-ready dict (counts, CTR by position × device)

Counting is done in-bundle (CountInBundle) and combined afterwards (SumCounts, sum): a combiner
call per impression and per feature would cost more than the counting.
"""
from __future__ import annotations

import collections
import os

import apache_beam as beam
from apache_beam.metrics import Metrics

from ranker.features import spec as fs
from ranker.pipeline import parse
from ranker.pipeline.lists import CLICKED_KIND, DEAD_LETTER, SPLITS, TRUNCATED
from ranker.pipeline.portable import CombineToOne, bundle_buffer
from ranker.pipeline.runtime import NAMESPACE, BufferingDoFn, MergeDicts
from ranker.pipeline.write import write_text_file


# --- counting ------------------------------------------------------------------------------------

class CountInBundle(BufferingDoFn):
    """In-mapper combining: `count_fn(counter, element, *args)` fills a Counter per bundle.

    Emits the Counter as one dict per bundle (for CombineGlobally(SumCounts)), or, with
    per_key, each (key, count) pair (for CombinePerKey(sum)). A per-element combiner call costs
    more than the counting itself, and the job counts a few things per impression.
    """

    MAX_KEYS = 100_000

    def __init__(self, count_fn, *args, per_key: bool = False, max_keys: int = MAX_KEYS):
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

    def _flush(self):
        counts, self._counts = self._counts, collections.Counter()
        if self._per_key:
            yield from counts.items()
        elif counts:
            yield dict(counts)


class SumCounts(MergeDicts):
    """Sums dicts of counts key by key: every statistic is a count until the final formatting."""

    def add_input(self, accumulator, counts):
        for key, value in counts.items():
            accumulator[key] = accumulator.get(key, 0) + value
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


def _write_vocabulary(feature_values: tuple[str, list[str]],
                      vocab_dir: str) -> tuple[str, list[str]]:
    feature, values = feature_values
    lines = "".join(value + "\n" for value in values)
    write_text_file(os.path.join(vocab_dir, f"{feature}.txt"), lines)
    return feature_values


def _ranked(feature_top: tuple[str, list], caps: dict[str, int]) -> tuple[str, list[str]]:
    feature, value_counts = feature_top
    return feature, _format_vocabulary(value_counts)[:caps[feature]]


class ComputeVocabularies(beam.PTransform):
    """Lists → DIR/vocab/<feature>.txt per vocabulary categorical, plus device_type.

    Values are ranked by how many impressions carry them (ties by value, for determinism) and
    capped at the feature's vocabulary_size when set (Top keeps only that many per bundle).
    Devices come from click lists only: judged lists carry no position bias to learn.
    Returns (feature, [values]) per vocabulary written; a vocabulary without values gets no
    file here (preprocess writes it empty).
    """

    def __init__(self, spec: fs.FeatureSpec, vocab_dir: str, dask_safe: bool = False):
        super().__init__()
        vocab_features = [f for f in spec.features if f.uses_vocabulary]
        self._features = tuple(
            (f.name, parse.CONTEXT_KEY if f.scope == fs.CONTEXT else parse.FEATURES_KEY)
            for f in vocab_features)
        self._caps = {f.name: f.vocabulary_size or _ALL for f in vocab_features}
        self._caps[fs.DEVICE] = _ALL
        self._vocab_dir = vocab_dir
        self._max_keys = bundle_buffer(dask_safe, CountInBundle.MAX_KEYS)

    @property
    def names(self) -> list[str]:
        return list(self._caps)

    def expand(self, lists):
        return (
            lists
            | "CountInBundle" >> beam.ParDo(CountInBundle(
                _count_values, self._features, per_key=True, max_keys=self._max_keys))
            | "Count" >> beam.CombinePerKey(sum)
            | "Usable" >> beam.Filter(_usable)
            | "ByFeature" >> beam.Map(lambda entry: (entry[0][0], (entry[0][1], entry[1])))
            | "Top" >> beam.combiners.Top.PerKey(max(self._caps.values()), key=_rank_key)
            | "Rank" >> beam.Map(_ranked, self._caps)
            | "Write" >> beam.Map(_write_vocabulary, self._vocab_dir)
        )


# --- stats ---------------------------------------------------------------------------------------

def _count_lines_read(counts: collections.Counter, lines: int) -> None:
    counts[("lines_read",)] += lines


def _count_truncated(counts: collections.Counter, truncated: int) -> None:
    counts[("truncated",)] += truncated
    counts[("lists_truncated",)] += 1


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
    """Summed counts → the stats.json layout of docs/schema.md.

    CTR-by-position dicts are built in numeric position order ("1", "2", …, "10"); JSON objects
    keep that order as long as nobody writes them with sort_keys.
    """
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
                         and key[1] != fs.JUDGED_DEVICE)
    return {
        "lines_read": counts.get(("lines_read",), 0),
        "impressions_valid": sum(impressions.values()),
        "dead_letter": {"total": sum(by_reason.values()), "by_reason": by_reason},
        "truncated_impressions": counts.get(("truncated",), 0),
        "lists_truncated": counts.get(("lists_truncated",), 0),
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
    """{"lines_read", "dead_letter", "train", "eval", "judged"[, "truncated"]} → one stats dict.

    `lines_read` holds how many lines each read task read (counted as read, independently of
    parsing, so the invariant lines_read == impressions_valid + dead_letter.total +
    truncated_impressions is a real check). An unknown device is a
    judged-list device never seen in click lists (the model maps it to its OOV id); the
    placeholder "unknown" of judged lines is not counted.
    """

    def __init__(self, dask_safe: bool = False):
        super().__init__()
        self._max_keys = bundle_buffer(dask_safe, CountInBundle.MAX_KEYS)

    def expand(self, inputs: dict):
        counted = [("lines_read", "CountLinesRead", _count_lines_read, ()),
                   (DEAD_LETTER, "CountDeadLetters", _count_dead_letter, ()),
                   (TRUNCATED, "CountTruncated", _count_truncated, ())]
        counted += [(split, f"Count_{split}", _count_list, (split,)) for split in SPLITS]
        partials = [inputs[name] | label >> beam.ParDo(
                        CountInBundle(count_fn, *args, max_keys=self._max_keys))
                    for name, label, count_fn, args in counted if name in inputs]
        return (
            partials
            | "AllCounts" >> beam.Flatten()
            | "Sum" >> CombineToOne(SumCounts())
            | "Format" >> beam.Map(format_stats)
            | "UnknownDevices" >> beam.Map(_report_unknown_devices)
        )
