"""Per-feature statistics of the kept lists, as TFDV users expect them (stats.json "features").

    ComputeFeatureStats → {feature: {"scope", "kind", "rows", "present", "missing",
                                     "missing_rate", numeric and vector: "min", "max", "mean"
                                     (vector: over every component, plus "length"),
                                     categorical: "distinct"}}

Context features are counted once per list (an ELWC holds one context), item features once per
impression. Moments are summed per bundle and merged by a CombineFn (MergeMoments); distinct
categorical values by Distinct and Count.PerElement, so no worker holds every value. With
dask_safe (portable.py) nothing waits for finish_bundle and no side input is read.
"""
from __future__ import annotations

import math

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from ranker.features import spec as fs
from ranker.pipeline import parse
from ranker.pipeline.portable import CollectDict, CombineToOne, JoinSingletons, bundle_buffer, \
    split_outputs
from ranker.pipeline.runtime import MergeDicts

_MAX_PENDING = 100_000  # distinct (feature, value) pairs a worker holds before flushing


def _new_moments() -> list:
    return [0, 0, math.inf, -math.inf, 0.0, 0]  # rows, present, min, max, sum, values


def _add_all(moments: list, kind: str, values: list) -> None:
    """One list's present values of a feature (numbers, vectors or categories) into its moments."""
    moments[1] += len(values)
    if kind == fs.CATEGORICAL:
        return
    flat = values if kind == fs.NUMERIC else [x for vector in values for x in vector]
    if flat:
        moments[2] = min(moments[2], min(flat))
        moments[3] = max(moments[3], max(flat))
        moments[4] += math.fsum(flat)
        moments[5] += len(flat)


class _MomentsInBundle(beam.DoFn):
    """Lists → one {feature: moments} per bundle (tagged `distinct`: (feature, value) pairs)."""

    MAX_LISTS = 100_000

    def __init__(self, features: tuple[tuple[str, str, str], ...], max_lists: int = MAX_LISTS):
        self._features = features
        self._max_lists = max_lists

    def start_bundle(self):
        self._moments: dict[str, list] = {}
        self._values: set = set()
        self._lists = 0

    def process(self, lst):
        impressions = lst[2]
        for name, scope, kind in self._features:
            rows = impressions[:1] if scope == parse.CONTEXT_KEY else impressions
            moments = self._moments.get(name)
            if moments is None:
                moments = self._moments[name] = _new_moments()
            moments[0] += len(rows)
            values = [value for value in (row[scope].get(name) for row in rows) if value is not None]
            if values:
                _add_all(moments, kind, values)
                if kind == fs.CATEGORICAL:
                    self._values.update((name, value) for value in values)
        self._lists += 1
        if len(self._values) >= _MAX_PENDING or self._lists >= self._max_lists:
            yield from self._flush_values()
        if self._lists >= self._max_lists:
            moments, self._moments, self._lists = self._moments, {}, 0
            yield moments

    def _flush_values(self):
        values, self._values = self._values, set()
        for pair in values:
            yield beam.pvalue.TaggedOutput("distinct", pair)

    def finish_bundle(self):
        for tagged in self._flush_values():
            yield beam.pvalue.TaggedOutput(
                "distinct", GlobalWindows.windowed_value(tagged.value))
        if self._moments:
            yield GlobalWindows.windowed_value(self._moments)


class MergeMoments(MergeDicts):
    """Merges {feature: [rows, present, min, max, sum, values]} dicts."""

    def add_input(self, accumulator, moments_by_feature):
        for name, moments in moments_by_feature.items():
            into = accumulator.setdefault(name, _new_moments())
            into[0] += moments[0]
            into[1] += moments[1]
            into[2] = min(into[2], moments[2])
            into[3] = max(into[3], moments[3])
            into[4] += moments[4]
            into[5] += moments[5]
        return accumulator


def format_feature_stats(moments_by_feature: dict, distinct: dict,
                         features: tuple[tuple[str, str, str, int], ...]) -> dict:
    """Merged moments and distinct counts → the stats.json "features" object (spec order)."""
    out = {}
    for name, scope, kind, length in features:
        rows, present, low, high, total, values = moments_by_feature.get(name, _new_moments())
        entry = {"scope": fs.CONTEXT if scope == parse.CONTEXT_KEY else fs.ITEM, "kind": kind,
                 "rows": rows, "present": present, "missing": rows - present,
                 "missing_rate": (rows - present) / rows if rows else 0.0}
        if kind == fs.CATEGORICAL:
            entry["distinct"] = distinct.get(name, 0)
        else:
            entry.update(min=low if values else None, max=high if values else None,
                         mean=total / values if values else None)
            if kind == fs.VECTOR:
                entry["length"] = length
        out[name] = entry
    return out


class ComputeFeatureStats(beam.PTransform):
    """Lists (any split) → one {feature: statistics} dict (format_feature_stats)."""

    def __init__(self, spec: fs.FeatureSpec, dask_safe: bool = False):
        super().__init__()
        self._features = tuple(
            (f.name, parse.CONTEXT_KEY if f.scope == fs.CONTEXT else parse.FEATURES_KEY, f.kind,
             f.length) for f in spec.features)
        self._dask_safe = dask_safe

    def expand(self, lists):
        moments_fn = _MomentsInBundle(tuple(f[:3] for f in self._features),
                                      bundle_buffer(self._dask_safe, _MomentsInBundle.MAX_LISTS))
        counted = split_outputs(lists, "MomentsInBundle", moments_fn, "moments", ["distinct"],
                                self._dask_safe)
        distinct = (counted["distinct"]
                    | "Distinct" >> beam.Distinct()
                    | "Feature" >> beam.Map(lambda pair: pair[0])
                    | "CountDistinct" >> beam.combiners.Count.PerElement()
                    | "DistinctByFeature" >> CombineToOne(CollectDict()))
        moments = counted["moments"] | "MergeMoments" >> CombineToOne(MergeMoments())
        return ({"moments": moments, "distinct": distinct}
                | "Join" >> JoinSingletons()
                | "Format" >> beam.Map(lambda joined, features: format_feature_stats(
                    joined["moments"], joined["distinct"], features), self._features))
