"""Log files → ordered lists in two passes over request partitions (spill.py), in bounded memory.

    _ParseSpillFn        (path, shard, shards) read tasks →
                            .spilled: (partition, spill file) of the valid lines, by request_id
                            .dead_letter: line-level dead letters (parse.py)
                            .lines_read: lines each task read
    _ListsOfPartitionFn  (partition, [spill files]) →
                            .lists: (request_id, kind, [impression, …] ordered by position)
                            .dead_letter: list-level rejections (order.py), raw line not attached
                            .truncated: per truncated click list, how many impressions were cut
                            .units: (query partition, spill file) of harvest unit counts
    PartitionedLists     the two, grouped by partition in between; list dead letters get their
                         raw line back (lists.AttachRaw)

Pass 1 parses every line once and appends each run of consecutive lines of one request to its
partition's file, packed (lists.pack_impression) with the request's query key (the canonical
raw `context`, harvest.py). Pass 2 holds one partition's packed runs, orders each request
(order.py), and sums harvest units (query key, item, device) over the partition's click lists
into files partitioned by query key, which harvest.py sums per unit. Work is one Beam element per
task or partition, not per line: the per-element cost of a runner stays out of the hot loop.
Counters (namespace ranker.preprocess): lines_read, lines_parsed, impressions_valid,
lists_clicked, lists_judged, dead_letter_<reason>.
"""
from __future__ import annotations

import collections
import json
import marshal

import apache_beam as beam
from apache_beam.metrics import Metrics

from ranker.features import spec as fs
from ranker.pipeline import harvest_fit as hf
from ranker.pipeline import paths
from ranker.pipeline import parse
from ranker.pipeline.lists import (CLICKED_KIND, DEAD_LETTER, JUDGED_KIND, LISTS, TRUNCATED,
                                   AttachRaw, pack_impression, unpack_impression, vector_fields)
from ranker.pipeline.order import order_list
from ranker.pipeline.portable import split_outputs
from ranker.pipeline.read import read_chunks
from ranker.pipeline.runtime import NAMESPACE, freeze_heap
from ranker.pipeline.spill import SpillWriter, read_spill

SPILLED, LINES_READ, UNITS = "spilled", "lines_read", "units"
REQUESTS_DIR, UNITS_DIR = "requests", "units"  # spill sub-folders


def _count(counts: collections.Counter) -> None:
    for name, value in counts.items():
        if value:
            Metrics.counter(NAMESPACE, name).inc(value)


class _ParseSpillFn(beam.DoFn):
    """One read task → its valid lines spilled by request, its dead letters, its line count."""

    def __init__(self, spec: fs.FeatureSpec, partitions: int, folder: str):
        self._spec, self._partitions, self._folder = spec, partitions, folder
        self._vectors = vector_fields(spec)

    def setup(self):
        freeze_heap(after="beam")

    def process(self, task: tuple[str, int, int]):
        path, shard, shards = task
        writer = SpillWriter(self._folder, self._partitions)
        counts = collections.Counter()
        for first, chunk in read_chunks(path, shard, shards):
            counts[LINES_READ] += len(chunk)
            yield from self._parse_chunk(path, first, chunk, writer, counts)
        for ref in writer.close():
            yield ref
        yield beam.pvalue.TaggedOutput(LINES_READ, counts[LINES_READ])
        _count(counts)

    def _parse_chunk(self, path, first, chunk, writer, counts):
        run_id, run_key, run = None, None, []
        for number, raw in enumerate(chunk, first):
            impression, dead = parse.parse_line(raw, self._spec, path, number)
            if impression is None:
                counts["dead_letter_" + dead["reason"]] += 1
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead)
                continue
            counts["lines_parsed"] += 1
            request_id = impression[fs.REQUEST_ID]
            if request_id != run_id:
                if run:
                    writer.add(run_id, (run_id, run_key, marshal.dumps(run)))
                run_id, run = request_id, []
                run_key = (None if parse.is_judged(impression)
                           else hf.query_key(json.loads(raw).get(parse.CONTEXT_KEY)))
            run.append((path, number, pack_impression(impression, self._vectors)))
        if run:
            writer.add(run_id, (run_id, run_key, marshal.dumps(run)))


class _ListsOfPartitionFn(beam.DoFn):
    """(partition, spill files) → ordered lists, list dead letters, truncation, harvest units."""

    def __init__(self, spec: fs.FeatureSpec, partitions: int, folder: str):
        self._max_list_size, self._partitions, self._folder = spec.max_list_size, partitions, folder
        self._vectors = vector_fields(spec)

    def setup(self):
        freeze_heap(after="beam")

    def process(self, partition_files):
        _, files = partition_files
        requests: dict[str, list] = {}
        for path in sorted(files):
            for request_id, key, packed in read_spill(path):
                entry = requests.get(request_id)
                if entry is None:
                    requests[request_id] = [key, packed]
                else:
                    entry[0] = entry[0] or key
                    entry.append(packed)
        counts, units = collections.Counter(), {}
        for request_id in sorted(requests):
            key, *runs = requests.pop(request_id)
            yield from self._order(request_id, key, runs, counts, units)
        writer = SpillWriter(self._folder, self._partitions)
        for unit, cells in units.items():
            writer.add(unit[0], (unit, cells))
        for ref in writer.close():
            yield beam.pvalue.TaggedOutput(UNITS, ref)
        _count(counts)

    def _order(self, request_id, key, runs, counts, units):
        located = [(source, line, None, impression)
                   for packed in runs for source, line, impression in marshal.loads(packed)]
        located.sort(key=_input_order)
        kept, dead, truncated = order_list(located, self._max_list_size)
        if truncated:
            yield beam.pvalue.TaggedOutput(TRUNCATED, truncated)
        for letter in dead:
            counts["dead_letter_" + letter["reason"]] += 1
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter)
        if not kept:
            return
        kind = JUDGED_KIND if parse.is_judged(kept[0]) else CLICKED_KIND
        counts["impressions_valid"] += len(kept)
        counts["lists_" + kind] += 1
        if kind == CLICKED_KIND:
            _add_units(units, key, kept, self._max_list_size)
        yield request_id, kind, [unpack_impression(i, self._vectors) for i in kept]


def _input_order(entry: tuple) -> tuple:
    return entry[3][fs.POSITION], entry[0], entry[1]


def _add_units(units: dict, key: str, kept: list[dict], max_position: int) -> None:
    """(shown, clicks) per position of each (query key, item, device) unit of one click list."""
    device = kept[0][fs.DEVICE]
    for impression in kept:
        position = impression[fs.POSITION]
        if position > max_position:
            continue
        hf.add_cell(units.setdefault((key, impression[fs.ITEM_ID], device), {}), position, 1,
                    impression[fs.CLICKED])


class PartitionedLists(beam.PTransform):
    """Read tasks → {"lists", "dead_letter", "truncated", "lines_read", "units"} (module doc).

    `folder` takes the spill files (under the run's staging folder); `partitions` is how many
    request and query partitions (spill.plan_partitions)."""

    def __init__(self, spec: fs.FeatureSpec, partitions: int, folder: str,
                 dask_safe: bool = False):
        super().__init__()
        self._spec, self._partitions, self._folder = spec, partitions, folder
        self._dask_safe = dask_safe

    def expand(self, tasks):
        parsed = split_outputs(
            tasks, "ParseAndSpill", _ParseSpillFn(self._spec, self._partitions,
                                                  paths.join(self._folder, REQUESTS_DIR)),
            SPILLED, [DEAD_LETTER, LINES_READ], self._dask_safe)
        grouped = split_outputs(
            parsed[SPILLED] | "GroupByPartition" >> beam.GroupByKey(), "OrderLists",
            _ListsOfPartitionFn(self._spec, self._partitions, paths.join(self._folder, UNITS_DIR)),
            LISTS, [DEAD_LETTER, TRUNCATED, UNITS], self._dask_safe)
        list_dead = grouped[DEAD_LETTER] | "AttachRaw" >> AttachRaw()
        return {LISTS: grouped[LISTS], TRUNCATED: grouped[TRUNCATED], UNITS: grouped[UNITS],
                LINES_READ: parsed[LINES_READ],
                DEAD_LETTER: (parsed[DEAD_LETTER], list_dead) | "AllDeadLetters" >> beam.Flatten()}
