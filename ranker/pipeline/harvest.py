"""HarvestInterventions: the model-free position-propensity estimate of `preprocess`
(intervention harvesting; the math and its rationale are in harvest_fit.py).

    {"valid": parsed impressions, "lists": ordered lists} → one dict, DIR/propensity_harvested.json

Steps: the query key of each request is the canonical JSON of its *raw* `context` (parsing keeps
only the context features the spec declares, and the query id usually is not one), read once
per request from the raw line; it is joined by request_id with the click lists that survived the
list rules (GroupIntoLists: no duplicate positions, no mixed or inconsistent requests, long lists
truncated), so judged lists and dead letters never count. Each list adds (shown, clicks) per
position to its (query key, item, device) unit; units are summed per key (CombinePerKey), then
folded into per-device pair sums with their bootstrap replicates by one CombineFn (bounded
accumulators, merged across workers) and fitted. Positions beyond the spec's max_list_size are
ignored. Counters (namespace ranker.preprocess): harvest_units, harvest_interventions.
"""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.metrics import Metrics

from ranker.features import spec as fs
from ranker.pipeline import harvest_fit as hf
from ranker.pipeline.lists import CLICKED_KIND, LISTS, VALID
from ranker.pipeline.portable import CombineToOne, bundle_buffer
from ranker.pipeline.runtime import NAMESPACE, BufferingDoFn

_MAX_BUFFER = 20_000  # entries held per bundle before flushing (bounded memory)


class _QueryKeyFn(beam.DoFn):
    """(request_id, (source, line, raw, impression)) → (request_id, query key), once per request
    per bundle: the raw line is decoded again only for the first line of each request."""

    def start_bundle(self):
        self._seen: set[str] = set()

    def process(self, keyed):
        request_id, (_source, _line, raw, impression) = keyed
        if request_id in self._seen or impression[fs.CLICKED] is None:
            return
        if len(self._seen) >= _MAX_BUFFER:
            self._seen = set()
        self._seen.add(request_id)
        yield request_id, hf.query_key(json.loads(raw).get("context"))


def _click_list(lst: tuple, max_position: int):
    """An ordered click list → (request_id, (device, ((position, item_id, clicked), …)))."""
    request_id, kind, impressions = lst
    if kind != CLICKED_KIND or not impressions:
        return
    yield request_id, (impressions[0][fs.DEVICE],
                       tuple((i[fs.POSITION], i[fs.ITEM_ID], i[fs.CLICKED])
                             for i in impressions if i[fs.POSITION] <= max_position))


class _UnitCountsFn(BufferingDoFn):
    """Joined requests → ((query key, item_id, device), ((position, shown, clicks), …)),
    pre-summed within the bundle (a query shows the same items again and again)."""

    def __init__(self, max_buffer: int = _MAX_BUFFER):
        self._max_buffer = max_buffer

    def start_bundle(self):
        self._buffer: dict[tuple, dict[int, list[int]]] = {}

    def process(self, joined):
        _request_id, grouped = joined
        keys, shown = list(grouped["key"]), list(grouped["list"])
        if not keys or not shown:
            return
        device, entries = shown[0]
        for position, item_id, clicked in entries:
            counts = self._buffer.setdefault((keys[0], item_id, device), {})
            cell = counts.setdefault(position, [0, 0])
            cell[0] += 1
            cell[1] += clicked
        if len(self._buffer) >= self._max_buffer:
            yield from self._flush()

    def _flush(self):
        buffer, self._buffer = self._buffer, {}
        for unit, counts in buffer.items():
            yield unit, tuple((k, s, c) for k, (s, c) in counts.items())


class _SumUnitFn(beam.CombineFn):
    """Sums one unit's (position, shown, clicks) triples."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, triples):
        for position, shown, clicks in triples:
            cell = accumulator.get(position)
            accumulator[position] = (shown, clicks) if cell is None else (
                cell[0] + shown, cell[1] + clicks)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            self.add_input(merged, ((k, s, c) for k, (s, c) in accumulator.items()))
        return merged

    def extract_output(self, accumulator):
        return tuple((k, s, c) for k, (s, c) in sorted(accumulator.items()))


class _CountUnitsFn(beam.DoFn):
    """Passes units through, counting them and the interventions among them per bundle."""

    def setup(self):
        self._units = Metrics.counter(NAMESPACE, "harvest_units")
        self._interventions = Metrics.counter(NAMESPACE, "harvest_interventions")

    def start_bundle(self):
        self._counts = [0, 0]

    def process(self, unit):
        self._counts[0] += 1
        self._counts[1] += len(unit[1]) >= 2
        yield unit

    def finish_bundle(self):
        self._units.inc(self._counts[0])
        self._interventions.inc(self._counts[1])


class _PairSumsFn(beam.CombineFn):
    """Units → {device: DeviceSums} with bootstrap replicates; the fitted result on extraction."""

    def __init__(self, replicates: int, min_interventions: int):
        self._replicates = replicates
        self._min_interventions = min_interventions

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, unit):
        (query, item_id, device), triples = unit
        sums = accumulator.get(device)
        if sums is None:
            sums = accumulator[device] = hf.DeviceSums(self._replicates)
        sums.add_unit(hf.unit_seed(query, item_id, device),
                      {k: (s, c) for k, s, c in triples})
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict[str, hf.DeviceSums] = {}
        for accumulator in accumulators:
            for device, sums in accumulator.items():
                if device in merged:
                    merged[device].merge(sums)
                else:
                    merged[device] = sums
        return merged

    def extract_output(self, accumulator):
        return hf.harvest_result(accumulator, self._min_interventions, self._replicates)


class HarvestInterventions(beam.PTransform):
    """{"valid": ParseImpressions' valid output, "lists": GroupIntoLists' lists} → a one-element
    PCollection: the propensity_harvested.json dict (nulls and zero units when there are no
    interventions)."""

    def __init__(self, spec: fs.FeatureSpec, replicates: int = hf.DEFAULT_REPLICATES,
                 min_interventions: int = hf.DEFAULT_MIN_INTERVENTIONS, dask_safe: bool = False):
        super().__init__()
        self._max_buffer = bundle_buffer(dask_safe, _MAX_BUFFER)
        self._max_position = spec.max_list_size
        self._replicates = replicates
        self._min_interventions = min_interventions

    def expand(self, inputs: dict):
        keys = inputs[VALID] | "QueryKeys" >> beam.ParDo(_QueryKeyFn())
        shown = inputs[LISTS] | "ClickLists" >> beam.FlatMap(_click_list, self._max_position)
        return (
            {"key": keys, "list": shown}
            | "JoinByRequest" >> beam.CoGroupByKey()
            | "UnitCounts" >> beam.ParDo(_UnitCountsFn(self._max_buffer))
            | "SumPerUnit" >> beam.CombinePerKey(_SumUnitFn())
            | "CountUnits" >> beam.ParDo(_CountUnitsFn())
            | "PairSums" >> CombineToOne(_PairSumsFn(self._replicates, self._min_interventions))
        )
