"""`ranker preprocess`: impression logs → ELWC TFRecords, vocabularies, dead letters and stats.

The driver checks what a worker could only fail on late (no files, unreadable or empty input, a
truncated gzip, a bad feature spec, an unusable --output) and reports it as one RankerError line;
then it runs the Beam graph built from read.py → lists.py (parse, group, split) → write.py, plus
summaries.py and feature_stats.py, into a staging folder beside --output, and assembles
stats.json and feature_spec.json there from the files the pipeline wrote (not from runner metrics,
which not every runner reports). Only a run that succeeded replaces --output (paths.publish): a
failed run, or one with more than --max-dead-letter-fraction of its lines dead-lettered (exit 2,
its output kept in OUTPUT.rejected/), leaves the previous output as it was.

Every line read is accounted for:
`lines_read == impressions_valid + dead_letter.total + truncated_impressions` (order.py).
Every path goes through Beam's FileSystems (paths.py), so gs:// and s3:// work with their extras.
"""
from __future__ import annotations

import json
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
from ranker.pipeline import paths, s3_compat
from ranker.pipeline.checks import check_inputs, load_spec
from ranker.pipeline.feature_stats import ComputeFeatureStats
from ranker.pipeline.harvest import HarvestInterventions
from ranker.pipeline.lists import (
    DEAD_LETTER, DEFAULT_EVAL_FRACTION, JUDGED, LISTS, SPLITS, TRUNCATED, VALID, GroupIntoLists,
    ParseImpressions, SplitByRequestHash)
from ranker.pipeline.preprocess_defaults import DEFAULT_MAX_DEAD_LETTER_FRACTION
from ranker.pipeline.read import ReadLogLines
from ranker.pipeline.runtime import progress
from ranker.pipeline.summaries import ComputeStats, ComputeVocabularies
from ranker.pipeline.write import WriteDeadLetters, WriteElwc, WriteJson, write_text_file

DEFAULT_RUNNER = "FnApiRunner"  # in-process; DirectRunner would try to download Prism
# Beam 2.77's DaskRunner (runners/dask) computes only the bag of the last transform applied
# (dask_runner.py: dask.optimize(list(bags.values())[-1])), feeds every tagged output of a ParDo
# to each consumer, and drops what a DoFn yields in finish_bundle (transform_evaluator.py
# apply_dofn_to_bundle), so Beam's own WriteToTFRecord/WriteToText write empty files.
DASK_UNSUPPORTED = ("--runner DaskRunner: Beam 2.77's DaskRunner runs only a pipeline's last "
                    "branch, merges tagged outputs and drops finish_bundle outputs (its file "
                    "sinks write empty files); use FnApiRunner with --direct_num_workers, or "
                    "Dataflow, Flink or Spark")

REJECTED_SUFFIX = ".rejected"  # beside --output: a run refused for its dead-letter fraction
OUTPUT_ENTRIES = (*SPLITS, fs.VOCAB_DIR, DEAD_LETTER, STATS_FILE, fs.SPEC_FILENAME,
                  TRUTH_FILE, HARVESTED_FILE)  # what a run replaces in --output; anything else stays
_PIPELINE_STATS = "_pipeline_stats.json"  # the pipeline's part of stats.json, merged by the driver


def run_preprocess(input_pattern: str, output_dir: str, feature_spec_path: str | None = None,
                   beam_args: Sequence[str] | None = None,
                   eval_fraction: float = DEFAULT_EVAL_FRACTION,
                   max_dead_letter_fraction: float = DEFAULT_MAX_DEAD_LETTER_FRACTION) -> dict:
    """Runs the job and returns the stats written to DIR/stats.json."""
    started = time.perf_counter()
    if not 0.0 <= max_dead_letter_fraction <= 1.0:
        raise RankerError(f"--max-dead-letter-fraction must be in [0, 1], got "
                          f"{max_dead_letter_fraction}")
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
    output = paths.output_location(output_dir, files)
    staging = f"{output}.staging-{uuid.uuid4().hex[:12]}"
    _progress(f"running the Beam job ({options.view_as(StandardOptions).runner}) → {staging}")
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, files, spec, staging, eval_fraction,
                           spread=not _single_local_worker(options))
        stats = finish_output(staging, files, spec, spec_path)
        stats["beam_args"] = list(beam_args or [])
        stats["seconds"] = round(time.perf_counter() - started, 3)
        _write_json(paths.join(staging, STATS_FILE), stats)
        _check_dead_letters(stats, max_dead_letter_fraction, staging, output)
        paths.publish(staging, output, OUTPUT_ENTRIES)
    finally:
        paths.delete_tree(staging)
    _progress(f"{stats['lines_read']} lines: {stats['impressions_valid']} impressions in "
              f"{sum(stats['requests'].values())} lists, {stats['truncated_impressions']} "
              f"truncated, {stats['dead_letter']['total']} dead letters, {stats['seconds']} s "
              f"→ {output}")
    return stats


def build_pipeline(pipeline: beam.Pipeline, files: Sequence[str], spec: fs.FeatureSpec,
                   output_dir: str, eval_fraction: float = DEFAULT_EVAL_FRACTION,
                   spread: bool = True) -> None:
    """The whole graph; every output lands under output_dir."""
    lines = pipeline | "ReadLogLines" >> ReadLogLines(list(files), spread=spread)
    parsed = lines | "ParseImpressions" >> ParseImpressions(spec)
    grouped = parsed[VALID] | "GroupIntoLists" >> GroupIntoLists(spec)
    splits = grouped[LISTS] | "SplitByRequestHash" >> SplitByRequestHash(eval_fraction)
    for split in SPLITS:
        prefix = paths.join(output_dir, split, "part")
        splits[split] | f"WriteElwc_{split}" >> WriteElwc(spec, prefix)
    dead = ((parsed[DEAD_LETTER], grouped[DEAD_LETTER])
            | "AllDeadLetters" >> beam.Flatten())
    dead | "WriteDeadLetters" >> WriteDeadLetters(paths.join(output_dir, DEAD_LETTER, "part"))
    grouped[LISTS] | "ComputeVocabularies" >> ComputeVocabularies(
        spec, paths.join(output_dir, fs.VOCAB_DIR))
    features = grouped[LISTS] | "ComputeFeatureStats" >> ComputeFeatureStats(spec)
    ({VALID: parsed[VALID], LISTS: grouped[LISTS]}
     | "HarvestInterventions" >> HarvestInterventions(spec)
     | "WriteHarvested" >> WriteJson(paths.join(output_dir, HARVESTED_FILE)))
    (dict(splits, lines=lines, dead_letter=dead, truncated=grouped[TRUNCATED])
     | "ComputeStats" >> ComputeStats()
     | "AddFeatureStats" >> beam.Map(lambda stats, f: dict(stats, features=f),
                                     beam.pvalue.AsSingleton(features))
     | "WriteStats" >> WriteJson(paths.join(output_dir, _PIPELINE_STATS)))


# --- driver-side checks --------------------------------------------------------------------------

def pipeline_options(beam_args: Sequence[str] | None) -> PipelineOptions:
    """Beam flags from the command line; FnApiRunner unless --runner says otherwise.

    DaskRunner is refused (DASK_UNSUPPORTED says why) rather than left to write partial output.
    """
    args = list(beam_args or [])
    options = PipelineOptions(args)
    runner = options.view_as(StandardOptions).runner
    if runner and runner.rsplit(".", 1)[-1] == "DaskRunner":
        raise RankerError(DASK_UNSUPPORTED)
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


def _single_local_worker(options: PipelineOptions) -> bool:
    """The in-process runner with one worker: nothing to gain from spreading lines over workers."""
    runner = options.view_as(StandardOptions).runner
    workers = options.view_as(DirectOptions).direct_num_workers
    return str(runner).lower().endswith(("fnapirunner", "directrunner")) and workers == 1


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
