"""Graph pieces that give the same result on every Beam runner, Beam 2.77's DaskRunner included.

That DaskRunner (apache_beam/runners/dask, checked on a 2-process LocalCluster, tests/test_dask.py)
translates Create, ParDo, GroupByKey and Flatten to dask.bag operations and runs everything else
from those (CoGroupByKey, CombinePerKey, Reshuffle as a no-op, side inputs, which it recomputes
inside each task that reads them). It also:
  (a) computes only the bag of the last transform applied (dask_runner.py);
  (b) hands every consumer of a multi-output ParDo all of its outputs, main and tagged alike;
  (c) drops what a DoFn yields in finish_bundle, so Beam's file sinks write empty files.
`dask_safe` graphs avoid all three and side inputs:
    split_outputs      a multi-output DoFn: Beam's tagged outputs, or (tag, value) pairs + filters
    bundle_buffer      how many elements a DoFn may buffer before it must yield (1: none)
    CombineToOne       CombineGlobally with exactly one output and no side input (every runner)
    JoinSingletons     {name: one-element PCollection} → one {name: value} dict, no side input
    WriteShardsWhole   a file sink that writes each shard whole in process(), after a GroupByKey
    Completion         one last transform that depends on every output, so (a) computes them all
"""
from __future__ import annotations

import zlib
from typing import Callable, Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.windowed_value import WindowedValue

DASK_RUNNER = "DaskRunner"


def is_dask_runner(runner) -> bool:
    """True for --runner DaskRunner, its dotted path, or the runner object."""
    name = runner if isinstance(runner, str) else type(runner).__name__
    return str(name).rsplit(".", 1)[-1] == DASK_RUNNER


def bundle_buffer(dask_safe: bool, size: int) -> int:
    """A DoFn's in-bundle buffer: `size` where finish_bundle outputs count, else 1 (no buffer)."""
    return 1 if dask_safe else size


# --- multi-output DoFns --------------------------------------------------------------------------

class _AsPairs(beam.DoFn):
    """Runs `fn` and yields each of its outputs as (tag, value); main outputs get `main`."""

    def __init__(self, fn: beam.DoFn, main: str):
        self._fn = fn
        self._main = main

    def setup(self):
        self._fn.setup()

    def start_bundle(self):
        self._fn.start_bundle()

    def process(self, element):
        for out in self._fn.process(element) or ():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield out.tag, out.value
            else:
                yield self._main, out

    def finish_bundle(self):
        for out in self._fn.finish_bundle() or ():
            tag = self._main
            if isinstance(out, beam.pvalue.TaggedOutput):
                tag, out = out.tag, out.value
            yield out.with_value((tag, out.value)) if isinstance(out, WindowedValue) else (tag, out)

    def teardown(self):
        self._fn.teardown()


def _select(pair: tuple, tag: str):
    if pair[0] == tag:
        yield pair[1]


def split_outputs(pcoll, label: str, fn: beam.DoFn, main: str, tags: Iterable[str],
                  dask_safe: bool) -> dict:
    """{tag: PCollection} of a DoFn that yields main values and beam.pvalue.TaggedOutput's.

    Beam's `.with_outputs` where tagged outputs are routed; with dask_safe, one PCollection of
    (tag, value) pairs and a filter per tag (each a ParDo of its own, which DaskRunner keeps apart).
    """
    tags = tuple(tags)
    if not dask_safe:
        outputs = pcoll | label >> beam.ParDo(fn).with_outputs(*tags, main=main)
        return {tag: outputs[tag] for tag in (main, *tags)}
    pairs = pcoll | label >> beam.ParDo(_AsPairs(fn, main))
    return {tag: pairs | f"{label}_{tag}" >> beam.FlatMap(_select, tag) for tag in (main, *tags)}


# --- combining without side inputs ---------------------------------------------------------------

class _Seeded(beam.CombineFn):
    """`fn` over (True, value) inputs; the seed (False, None) only makes the group exist."""

    def __init__(self, fn: beam.CombineFn):
        self._fn = fn

    def create_accumulator(self):
        return self._fn.create_accumulator()

    def add_input(self, accumulator, flagged):
        return self._fn.add_input(accumulator, flagged[1]) if flagged[0] else accumulator

    def merge_accumulators(self, accumulators):
        return self._fn.merge_accumulators(accumulators)

    def extract_output(self, accumulator):
        return self._fn.extract_output(accumulator)


class CombineToOne(beam.PTransform):
    """CombineGlobally(fn) that always has one output (fn's empty result when there is no input)
    and no side input: Beam injects that default through a side input, which DaskRunner computes
    again inside the task that reads it."""

    def __init__(self, fn: beam.CombineFn):
        super().__init__()
        self._fn = fn

    def expand(self, pcoll):
        seed = pcoll.pipeline | "Seed" >> beam.Create([(0, (False, None))])
        keyed = pcoll | "Key" >> beam.Map(lambda value: (0, (True, value)))
        return ((keyed, seed)
                | "WithSeed" >> beam.Flatten()
                | "Combine" >> beam.CombinePerKey(_Seeded(self._fn))
                | "Value" >> beam.Map(lambda kv: kv[1]))


class CollectDict(beam.CombineFn):
    """(key, value) pairs → one {key: value} dict (the last value of a repeated key wins)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, named):
        accumulator[named[0]] = named[1]
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


class JoinSingletons(beam.PTransform):
    """{name: PCollection of one element} → one {name: element} dict (AsSingleton's job, with
    no side input)."""

    def expand(self, named: dict):
        tagged = [pcoll | f"Name_{name}" >> beam.Map(lambda value, n: (n, value), name)
                  for name, pcoll in named.items()]
        return tagged | "All" >> beam.Flatten() | "Join" >> CombineToOne(CollectDict())


# --- files ---------------------------------------------------------------------------------------

def shard_name(prefix: str, shard: int, shards: int, suffix: str) -> str:
    """Beam's file naming: PREFIX-SSSSS-of-NNNNN SUFFIX."""
    return f"{prefix}-{shard:05d}-of-{shards:05d}{suffix}"


def _shard_of(record: bytes, shards: int) -> tuple[int, bytes]:
    return zlib.crc32(record) % shards, record


class _WriteShardFn(beam.DoFn):
    def __init__(self, prefix: str, shards: int, suffix: str, compression: str,
                 write_record: Callable):
        self._prefix, self._shards, self._suffix = prefix, shards, suffix
        self._compression, self._write_record = compression, write_record

    def process(self, shard_records):
        shard, records = shard_records
        path = shard_name(self._prefix, shard, self._shards, self._suffix)
        with FileSystems.create(path, compression_type=self._compression) as fh:
            for record in sorted(r for r in records if r is not None):  # a re-run: same bytes
                self._write_record(fh, record)
        yield path


class WriteShardsWhole(beam.PTransform):
    """Records (bytes) → PREFIX-SSSSS-of-NNNNN SUFFIX files, a record's shard by its crc32, each
    file written whole in process() after a GroupByKey (no finish_bundle, no finalize step: the
    driver publishes the staging folder). Every shard gets its file, empty if no record falls
    in it (as Beam's sinks do). Yields the paths written."""

    def __init__(self, prefix: str, suffix: str, shards: int, write_record: Callable,
                 compression: str = CompressionTypes.UNCOMPRESSED):
        super().__init__()
        if shards < 1:
            raise ValueError(f"shards must be ≥ 1, got {shards}")
        self._args = (prefix, shards, suffix, compression, write_record)

    def expand(self, records):
        shards = self._args[1]
        every_shard = records.pipeline | "EveryShard" >> beam.Create(
            [(shard, None) for shard in range(shards)])
        return ((records | "Shard" >> beam.Map(_shard_of, shards), every_shard)
                | "WithEveryShard" >> beam.Flatten()
                | "GroupByShard" >> beam.GroupByKey()
                | "WriteWhole" >> beam.ParDo(_WriteShardFn(*self._args)))


def write_line(fh, record: bytes) -> None:
    fh.write(record + b"\n")


class Completion(beam.PTransform):
    """{name: PCollection} → one PCollection that depends on all of them: applied last, it makes
    DaskRunner (which computes only the last transform's bag) compute every output."""

    def expand(self, named: dict):
        return (list(named.values()) | "Everything" >> beam.Flatten()
                | "Done" >> beam.combiners.Count.Globally().without_defaults())
