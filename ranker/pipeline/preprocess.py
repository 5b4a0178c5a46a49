"""`ranker preprocess`: impression logs → ELWC TFRecords, vocabularies, dead letters and stats.

The driver checks what a worker could only fail on late (no files, unreadable or empty input, a
truncated gzip, a bad feature spec, an unusable --output) and reports it as one RankerError line;
then it runs the Beam graph built from partitioned.py (read and parse, group by request through
spill files: memory bounded by one partition, spill.py) → lists.py (split) → write.py, plus
summaries.py, feature_stats.py and harvest.py, into a staging folder beside --output, and assembles
stats.json and feature_spec.json there from the files the pipeline wrote (not from runner metrics,
which not every runner reports). Only a run that succeeded replaces --output (paths.publish): a
failed run, or one with more than --max-dead-letter-fraction of its lines dead-lettered (exit 2,
its output kept in OUTPUT.rejected/), leaves the previous output as it was.

Every line read is accounted for:
`lines_read == impressions_valid + dead_letter.total + truncated_impressions` (order.py).
Every path goes through Beam's FileSystems (paths.py), so gs:// and s3:// work with their extras.
On --runner DaskRunner the graph takes its dask_safe form (portable.py, dask_support.py): the same
records, dead letters, vocabularies and stats as on FnApiRunner (tests/test_dask.py).
"""
from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, SetupOptions,
                                                  StandardOptions)

from ranker.artifacts import HARVESTED_FILE, STATS_FILE, TRUTH_FILE
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline import dask_support, paths, s3_compat
from ranker.pipeline.checks import check_inputs, load_spec
from ranker.pipeline.feature_stats import ComputeFeatureStats
from ranker.pipeline.harvest import HarvestInterventions
from ranker.pipeline.lists import DEAD_LETTER, JUDGED, LISTS, SPLITS, SplitByRequestHash
from ranker.pipeline.options import DEFAULT_EVAL_FRACTION, LOCAL_PARALLEL_MIB, PreprocessOptions
from ranker.pipeline.portable import Completion, JoinSingletons
from ranker.pipeline.partitioned import LINES_READ, TRUNCATED, UNITS, PartitionedLists
from ranker.pipeline.runtime import progress
from ranker.pipeline.spill import SPILL_DIR, estimated_raw_bytes, plan_partitions
from ranker.pipeline.summaries import ComputeStats, ComputeVocabularies
from ranker.pipeline.write import WriteDeadLetters, WriteElwc, WriteJson, write_text_file

DEFAULT_RUNNER = "FnApiRunner"  # in-process; DirectRunner would try to download Prism

LOCAL_PARALLEL_BYTES = LOCAL_PARALLEL_MIB * 2**20
REJECTED_SUFFIX = ".rejected"  # beside --output: a run refused for its dead-letter fraction
OUTPUT_ENTRIES = (*SPLITS, fs.VOCAB_DIR, DEAD_LETTER, STATS_FILE, fs.SPEC_FILENAME,
                  TRUTH_FILE, HARVESTED_FILE)  # what a run replaces in --output; anything else stays
_PIPELINE_STATS = "_pipeline_stats.json"  # the pipeline's part of stats.json, merged by the driver


def run_preprocess(input_pattern: str, output_dir: str, feature_spec_path: str | None = None,
                   beam_args: Sequence[str] | None = None, **options) -> dict:
    """preprocess(PreprocessOptions(…)): runs the job, returns the stats written to DIR/stats.json."""
    return preprocess(PreprocessOptions(input_pattern, output_dir, feature_spec_path,
                                        tuple(beam_args or ()), **options))


def preprocess(opts: PreprocessOptions) -> dict:
    """Runs the job and returns the stats written to DIR/stats.json."""
    started = time.perf_counter()
    opts.check()
    beam_args, eval_fraction = list(opts.beam_args), opts.eval_fraction
    input_pattern, output_dir, feature_spec_path = opts.input_pattern, opts.output_dir, opts.feature_spec_path
    options = pipeline_options(beam_args)
    FileSystems.set_options(options)  # the driver's own reads and writes: --s3_endpoint_url, …
    files = paths.match_inputs(input_pattern)
    spec_path = (paths.normalise(feature_spec_path) if feature_spec_path
                 else paths.join(paths.parent(files[0]), fs.SPEC_FILENAME))
    spec = load_spec(spec_path)
    _progress(f"{len(files)} input file(s), feature spec {spec_path}")
    check_inputs(files)
    _progress(f"inputs readable: {', '.join(f.rsplit('/', 1)[-1] for f in files[:5])}"
              f"{' …' if len(files) > 5 else ''}")
    raw_bytes = estimated_raw_bytes(files)
    _use_every_core(options, beam_args, raw_bytes)
    output = paths.output_location(output_dir, files)
    staging = f"{output}.staging-{uuid.uuid4().hex[:12]}"
    direct = options.view_as(DirectOptions)
    workers = (f", {direct.direct_num_workers} worker(s) {direct.direct_running_mode}"
               if _local_workers(options) else "")
    _progress(f"running the Beam job ({options.view_as(StandardOptions).runner}{workers}) → "
              f"{staging}")
    try:
        _run_pipeline(options, files, spec, staging, eval_fraction, raw_bytes)
        paths.delete_tree(paths.join(staging, SPILL_DIR))
        stats = finish_output(staging, files, spec, spec_path)
        stats["beam_args"] = list(beam_args or [])
        stats["seconds"] = round(time.perf_counter() - started, 3)
        _write_json(paths.join(staging, STATS_FILE), stats)
        _check_dead_letters(stats, opts.max_dead_letter_fraction, staging, output)
        paths.publish(staging, output, OUTPUT_ENTRIES)
    finally:
        paths.delete_tree(staging)
    _progress(f"{stats['lines_read']} lines: {stats['impressions_valid']} impressions in "
              f"{sum(stats['requests'].values())} lists, {stats['truncated_impressions']} "
              f"truncated, {stats['dead_letter']['total']} dead letters, {stats['seconds']} s "
              f"→ {output}")
    return stats


def _run_pipeline(options: PipelineOptions, files: Sequence[str], spec: fs.FeatureSpec,
                  staging: str, eval_fraction: float, raw_bytes: int) -> None:
    """Builds and runs the graph: its dask_safe form on DaskRunner, whose client is closed after."""
    dask_safe, read_shards, whole_shards = graph_form(options, files)
    partitions = max(plan_partitions(raw_bytes), 2 * read_shards)  # work for every worker
    _progress(f"{partitions} request partition(s), {read_shards} read task(s) per file")
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, files, spec, staging, eval_fraction,
                   spread=not dask_safe and _local_workers(options) != 1,
                   dask_safe=dask_safe, read_shards=read_shards, whole_shards=whole_shards,
                   partitions=partitions)
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        dask_support.close_client(result)


def graph_form(options: PipelineOptions, files: Sequence[str]) -> tuple[bool, int, int]:
    """(dask_safe, read tasks per file, whole-file shards) of build_pipeline for these options."""
    if dask_support.is_dask_runner(options.view_as(StandardOptions).runner):
        return (True, *dask_support.plan_partitions(options, files))
    return False, _local_workers(options) or 1, 0


def build_pipeline(pipeline: beam.Pipeline, files: Sequence[str], spec: fs.FeatureSpec,
                   output_dir: str, eval_fraction: float = DEFAULT_EVAL_FRACTION,
                   spread: bool = True, dask_safe: bool = False, read_shards: int = 1,
                   whole_shards: int = 0, partitions: int = 1) -> None:
    """The whole graph; every output lands under output_dir (spill files under its _spill/).

    read_shards tasks read each file (each parses every read_shards-th chunk); spread
    reshuffles the tasks over workers; partitions: request and query partitions (spill.py).
    dask_safe: the form DaskRunner runs (portable.py); whole_shards > 0: files written by
    WriteShardsWhole (needed with dask_safe)."""
    tasks = [(path, shard, read_shards) for path in files for shard in range(read_shards)]
    if spread:  # keyed by index, in order: FnApiRunner deals groups to workers in turn, so a
        # file's read shards go to different workers (a Reshuffle's random order did not)
        tasks = (pipeline | "ReadTasks" >> beam.Create(list(enumerate(tasks)), reshuffle=False)
                 | "SpreadTasks" >> beam.GroupByKey()
                 | "Task" >> beam.FlatMap(lambda indexed: indexed[1]))
    else:
        tasks = pipeline | "ReadTasks" >> beam.Create(tasks)
    grouped = tasks | "PartitionedLists" >> PartitionedLists(
        spec, partitions, paths.join(output_dir, SPILL_DIR), dask_safe)
    splits = grouped[LISTS] | "SplitByRequestHash" >> SplitByRequestHash(eval_fraction, dask_safe)
    written = [splits[split] | f"WriteElwc_{split}" >> WriteElwc(
        spec, paths.join(output_dir, split, "part"), whole_shards) for split in SPLITS]
    dead = grouped[DEAD_LETTER]
    written.append(dead | "WriteDeadLetters" >> WriteDeadLetters(
        paths.join(output_dir, DEAD_LETTER, "part"), whole_shards))
    written.append(grouped[LISTS] | "ComputeVocabularies" >> ComputeVocabularies(
        spec, paths.join(output_dir, fs.VOCAB_DIR), dask_safe))
    features = grouped[LISTS] | "ComputeFeatureStats" >> ComputeFeatureStats(spec, dask_safe)
    written.append(grouped[UNITS]
                   | "HarvestInterventions" >> HarvestInterventions(dask_safe=dask_safe)
                   | "WriteHarvested" >> WriteJson(paths.join(output_dir, HARVESTED_FILE)))
    stats = (dict(splits, lines_read=grouped[LINES_READ], dead_letter=dead,
                  truncated=grouped[TRUNCATED])
             | "ComputeStats" >> ComputeStats(dask_safe))
    written.append({"stats": stats, "features": features}
                   | "JoinFeatureStats" >> JoinSingletons()
                   | "AddFeatureStats" >> beam.Map(
                       lambda joined: dict(joined["stats"], features=joined["features"]))
                   | "WriteStats" >> WriteJson(paths.join(output_dir, _PIPELINE_STATS)))
    # last: DaskRunner computes only what the last transform depends on
    _ = dict(enumerate(written)) | "Completion" >> Completion()


# --- driver-side checks --------------------------------------------------------------------------

def pipeline_options(beam_args: Sequence[str] | None) -> PipelineOptions:
    """Beam flags from the command line; FnApiRunner unless --runner says otherwise.

    --runner DaskRunner takes Beam's DaskOptions (--dask_client_address, …; dask_support.py).
    """
    args = list(beam_args or [])
    options = PipelineOptions(args)
    dask_support.use_dask_runner(options, args)
    runner = options.view_as(StandardOptions).runner
    known = options.get_all_options(retain_unknown_options=False)
    with_unknown = options.get_all_options(retain_unknown_options=True)
    unknown = sorted(set(with_unknown) - set(known))
    if unknown:
        raise RankerError(f"unknown option(s) {unknown}: neither a preprocess nor a Beam "
                          "pipeline flag")
    if not runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    setup = options.view_as(SetupOptions)  # every worker imports it: empty files on s3:// work
    setup.beam_plugins = sorted({*(setup.beam_plugins or []), s3_compat.PLUGIN})
    return options


def _use_every_core(options: PipelineOptions, beam_args: Sequence[str],
                    raw_bytes: int) -> None:
    """Without --runner or --direct_num_workers, logs of LOCAL_PARALLEL_BYTES or more (raw,
    estimated) run on a worker process per core; smaller ones in process, where starting the
    workers (~3 s) would cost more than it saves."""
    if any(a.startswith(("--runner", "--direct_num_workers", "--direct_running_mode"))
           for a in beam_args):
        return
    cores = multiprocessing.cpu_count()
    if cores > 1 and raw_bytes >= LOCAL_PARALLEL_BYTES:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers, direct.direct_running_mode = cores, "multi_processing"


def _local_workers(options: PipelineOptions) -> int | None:
    """How many workers the local runner (FnApiRunner, DirectRunner) runs; None for others.

    Each file is then read by that many tasks, each parsing every n-th chunk of it."""
    runner = options.view_as(StandardOptions).runner
    if not str(runner).lower().endswith(("fnapirunner", "directrunner")):
        return None
    workers = options.view_as(DirectOptions).direct_num_workers
    return workers if workers > 0 else multiprocessing.cpu_count()


# --- output --------------------------------------------------------------------------------------

def _check_dead_letters(stats: dict, max_fraction: float, staging: str, output: str) -> None:
    """RankerError when too many lines were dead-lettered; the run's output goes aside."""
    lines, dead = stats["lines_read"], stats["dead_letter"]["total"]
    if not lines or dead / lines <= max_fraction:
        return
    rejected = output + REJECTED_SUFFIX
    paths.delete_tree(rejected)
    paths.move_tree(staging, rejected)
    top = max(stats["dead_letter"]["by_reason"].items(), key=lambda kv: kv[1])[0]
    raise RankerError(f"{dead} of {lines} lines ({dead / lines:.1%}) were dead-lettered (most: "
                      f"{top}), more than --max-dead-letter-fraction {max_fraction}; {output} "
                      f"is unchanged, this run's dead letters are in "
                      f"{paths.join(rejected, DEAD_LETTER)}")


def finish_output(output_dir: str, files: Sequence[str], spec: fs.FeatureSpec,
                  spec_path: str) -> dict:
    """stats.json content, the resolved feature_spec.json, truth.json; drops an empty judged/."""
    pipeline_stats = paths.join(output_dir, _PIPELINE_STATS)
    stats = json.loads(paths.read_bytes(pipeline_stats))
    FileSystems.delete([pipeline_stats])
    vocab_sizes = _vocabulary_sizes(output_dir, spec)
    resolved = spec.resolved(vocab_sizes)
    _write_json(paths.join(output_dir, fs.SPEC_FILENAME), resolved.to_json())
    if not stats["requests"][JUDGED]:
        paths.delete_tree(paths.join(output_dir, JUDGED))
    stats["vocabulary_sizes"] = vocab_sizes
    stats["inputs"] = list(files)
    stats["feature_spec"] = spec_path
    stats["truth"] = _copy_truth(files, output_dir)
    return stats


def _vocabulary_sizes(output_dir: str, spec: fs.FeatureSpec) -> dict[str, int]:
    """Sizes of the written vocabularies; a feature that never had a value gets an empty file."""
    names = [f.name for f in spec.features if f.uses_vocabulary] + [fs.DEVICE]
    sizes = {}
    for name in names:
        path = paths.join(output_dir, fs.VOCAB_DIR, f"{name}.txt")
        if not FileSystems.exists(path):
            write_text_file(path, "")
        text = paths.read_bytes(path).decode("utf-8")
        sizes[name] = sum(1 for line in text.split("\n") if line)
    return sizes


def _copy_truth(files: Sequence[str], output_dir: str) -> str | None:
    """truth.json from beside the logs (the simulator writes it) → DIR, for evaluate.

    Returns the path it will have once published (the run writes into a staging folder)."""
    source = paths.join(paths.parent(files[0]), TRUTH_FILE)
    if not FileSystems.exists(source):
        return None
    FileSystems.copy([source], [paths.join(output_dir, TRUTH_FILE)])
    return TRUTH_FILE


def _write_json(path: str, obj: dict) -> None:
    write_text_file(path, json.dumps(obj, indent=2) + "\n")


_progress = progress
