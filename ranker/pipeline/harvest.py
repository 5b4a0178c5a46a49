"""HarvestInterventions: the model-free position-propensity estimate of `preprocess`
(intervention harvesting; the math and its rationale are in harvest_fit.py).

    (query partition, unit spill file) refs (partitioned.py) → one dict,
    DIR/propensity_harvested.json

The query key of a request is the canonical JSON of its *raw* `context` (parsing keeps only the
context features the spec declares, and the query id usually is not one), read from the raw line
when the request is parsed. Only click lists that survived the list rules (no duplicate
positions, no mixed or inconsistent requests, long lists truncated) count, so judged lists and
dead letters never do. Each list adds (shown, clicks) per position to its (query key, item,
device) unit; partitioned.py sums units per request partition into files partitioned by query
key, so one task here sees every part of its units: it sums them and folds them into per-device
pair sums with their bootstrap replicates (bounded accumulators, merged across tasks), which are
fitted at the end. Positions beyond the spec's max_list_size are ignored. Counters (namespace
ranker.preprocess): harvest_units, harvest_interventions.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from ranker.pipeline import harvest_fit as hf
from ranker.pipeline.portable import CombineToOne, bundle_buffer
from ranker.pipeline.runtime import NAMESPACE, BufferingDoFn
from ranker.pipeline.spill import read_spill

_MAX_PARTITIONS = 1000  # query partitions merged in a bundle before their accumulator is emitted


class _PairSumsFn(beam.CombineFn):
    """Units → {device: DeviceSums} with bootstrap replicates; the fitted result on extraction."""

    def __init__(self, replicates: int, min_interventions: int):
        self._replicates = replicates
        self._min_interventions = min_interventions

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, unit):
        """unit: ((query key, item, device), {position: (shown, clicks)}), complete."""
        (query, item_id, device), cells = unit
        sums = accumulator.get(device)
        if sums is None:
            sums = accumulator[device] = hf.DeviceSums(self._replicates)
        sums.add_unit(hf.unit_seed(query, item_id, device), cells)
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



class _HarvestPartitionFn(BufferingDoFn):
    """(query partition, unit files) → pair-sums accumulators of complete units, merged over up
    to `max_partitions` partitions of a bundle: one accumulator holds arrays of
    (1 + replicates) × 3 int64 per position pair and device (a few MiB), and the runner would
    otherwise hold one per partition."""

    def __init__(self, pair_sums: _PairSumsFn, max_partitions: int):
        self._pair_sums = pair_sums
        self._max_partitions = max_partitions

    def setup(self):
        self._units = Metrics.counter(NAMESPACE, "harvest_units")
        self._interventions = Metrics.counter(NAMESPACE, "harvest_interventions")

    def start_bundle(self):
        self._merged, self._partitions = None, 0

    def process(self, partition_files):
        accumulator = self._partition_sums(partition_files)
        self._merged = accumulator if self._merged is None else \
            self._pair_sums.merge_accumulators([self._merged, accumulator])
        self._partitions += 1
        if self._partitions >= self._max_partitions:
            yield from self._flush()

    def _flush(self):
        if self._merged is not None:
            yield self._merged
        self._merged, self._partitions = None, 0

    def _partition_sums(self, partition_files):
        _, files = partition_files
        units: dict[tuple, dict[int, tuple[int, int]]] = {}
        for path in sorted(files):
            for unit, part in read_spill(path):
                cells = units.setdefault(unit, {})
                for position, (shown, clicks) in part.items():
                    hf.add_cell(cells, position, shown, clicks)
        accumulator = self._pair_sums.create_accumulator()
        for unit_cells in units.items():  # in any order: the sums are exact integers
            self._pair_sums.add_input(accumulator, unit_cells)
        self._units.inc(len(units))
        self._interventions.inc(sum(1 for cells in units.values() if len(cells) >= 2))
        return accumulator


class _MergePairSums(beam.CombineFn):
    """Merges _PairSumsFn accumulators; the fitted result on extraction."""

    def __init__(self, pair_sums: _PairSumsFn):
        self._pair_sums = pair_sums

    def create_accumulator(self):
        return self._pair_sums.create_accumulator()

    def add_input(self, accumulator, other):
        return self._pair_sums.merge_accumulators([accumulator, other])

    def merge_accumulators(self, accumulators):
        return self._pair_sums.merge_accumulators(accumulators)

    def extract_output(self, accumulator):
        return self._pair_sums.extract_output(accumulator)


class HarvestInterventions(beam.PTransform):
    """Unit file refs → a one-element PCollection: the propensity_harvested.json dict (nulls
    and zero units when there are no interventions)."""

    def __init__(self, replicates: int = hf.DEFAULT_REPLICATES,
                 min_interventions: int = hf.DEFAULT_MIN_INTERVENTIONS, dask_safe: bool = False):
        super().__init__()
        self._pair_sums = _PairSumsFn(replicates, min_interventions)
        self._max_partitions = bundle_buffer(dask_safe, _MAX_PARTITIONS)

    def expand(self, unit_files):
        return (unit_files
                | "GroupByQueryPartition" >> beam.GroupByKey()
                | "PairSumsOfPartition" >> beam.ParDo(
                    _HarvestPartitionFn(self._pair_sums, self._max_partitions))
                | "MergePairSums" >> CombineToOne(_MergePairSums(self._pair_sums)))
