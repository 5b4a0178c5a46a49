"""`ranker preprocess`: impression logs → ELWC TFRecords, vocabularies, dead letters and stats.

The driver checks what a worker could only fail on late (no files, empty input, a truncated
gzip, a bad feature spec) and reports it as one RankerError line; then it runs the Beam graph
built from read.py → lists.py (parse, group, split) → write.py, plus summaries.py (vocabularies,
stats), and assembles DIR/stats.json and DIR/feature_spec.json from the files the pipeline wrote
(not from runner metrics, which not every runner reports).
"""
from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import time
import zlib
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline.lists import (
    DEAD_LETTER, DEFAULT_EVAL_FRACTION, JUDGED, LISTS, SPLITS, VALID, GroupIntoLists,
    ParseImpressions, SplitByRequestHash)
from ranker.pipeline.read import ReadLogLines, log_format
from ranker.pipeline.runtime import progress
from ranker.pipeline.summaries import ComputeStats, ComputeVocabularies
from ranker.pipeline.write import WriteDeadLetters, WriteElwc, WriteJson

DEFAULT_RUNNER = "FnApiRunner"  # in-process; DirectRunner would try to download Prism
OUTPUT_DIRS = (*SPLITS, fs.VOCAB_DIR, DEAD_LETTER)
STATS_FILENAME = "stats.json"
TRUTH_FILENAME = "truth.json"
_PIPELINE_STATS = "_pipeline_stats.json"  # the pipeline's part of stats.json, merged by the driver


def run_preprocess(input_pattern: str, output_dir: str, feature_spec_path: str | None = None,
                   beam_args: Sequence[str] | None = None,
                   eval_fraction: float = DEFAULT_EVAL_FRACTION) -> dict:
    """Runs the job and returns the stats written to DIR/stats.json."""
    started = time.perf_counter()
    files = match_inputs(input_pattern)
    spec_path = feature_spec_path or os.path.join(os.path.dirname(files[0]), fs.SPEC_FILENAME)
    spec = fs.load_spec(spec_path)
    _progress(f"{len(files)} input file(s), feature spec {spec_path}")
    check_inputs(files)
    _progress(f"inputs readable: {', '.join(os.path.basename(f) for f in files[:5])}"
              f"{' …' if len(files) > 5 else ''}")
    options = pipeline_options(beam_args)
    output_dir = os.path.abspath(output_dir)
    clear_output(output_dir)
    _progress(f"running the Beam job ({options.view_as(StandardOptions).runner}) → {output_dir}")
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, files, spec, output_dir, eval_fraction,
                       spread=not _single_local_worker(options))
    stats = finish_output(output_dir, files, spec, spec_path)
    stats["beam_args"] = list(beam_args or [])
    stats["seconds"] = round(time.perf_counter() - started, 3)
    _write_json(os.path.join(output_dir, STATS_FILENAME), stats)
    _progress(f"{stats['lines_read']} lines: {stats['impressions_valid']} impressions in "
              f"{sum(stats['requests'].values())} lists, {stats['dead_letter']['total']} dead "
              f"letters, {stats['seconds']} s")
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
        prefix = os.path.join(output_dir, split, "part")
        splits[split] | f"WriteElwc_{split}" >> WriteElwc(spec, prefix)
    dead = ((parsed[DEAD_LETTER], grouped[DEAD_LETTER])
            | "AllDeadLetters" >> beam.Flatten())
    dead | "WriteDeadLetters" >> WriteDeadLetters(os.path.join(output_dir, DEAD_LETTER,
                                                                  "part"))
    grouped[LISTS] | "ComputeVocabularies" >> ComputeVocabularies(
        spec, os.path.join(output_dir, fs.VOCAB_DIR))
    (dict(splits, lines=lines, dead_letter=dead)
     | "ComputeStats" >> ComputeStats()
     | "WriteStats" >> WriteJson(os.path.join(output_dir, _PIPELINE_STATS)))


# --- driver-side checks --------------------------------------------------------------------------

def match_inputs(pattern: str) -> list[str]:
    """Sorted log files matching the glob (other files are skipped); RankerError when none."""
    if not pattern:
        raise RankerError("--input: give a glob of .jsonl, .jsonl.gz or .parquet logs")
    expanded = os.path.expanduser(pattern)
    if os.path.isdir(expanded):  # a folder means every log in it
        expanded = os.path.join(expanded, "*")
    files = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
    if not files:
        if glob.has_magic(expanded):
            raise RankerError(f"{pattern}: no file matches")
        raise RankerError(f"{pattern}: no such file")
    logs = [p for p in files if log_format(p) is not None]
    if not logs:
        raise RankerError(f"{files[0]}: not an impression log (expected .jsonl, .jsonl.gz or "
                          f".parquet)")
    skipped = [os.path.basename(p) for p in files if log_format(p) is None]
    if skipped:  # e.g. `--input 'DIR/*'` over a simulate folder also matches its JSON files
        _progress(f"skipping {len(skipped)} matched file(s) that are not logs: "
                  f"{', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}")
    return logs


def check_inputs(files: Sequence[str]) -> int:
    """Reads every gzip through (a truncated one would fail a worker late) and rejects empty input.

    Returns the number of non-empty files; a RankerError names the first bad file.
    """
    non_empty = 0
    for path in files:
        fmt = log_format(path)
        if fmt == "gzip":
            non_empty += _check_gzip(path)
        elif fmt == "parquet":
            non_empty += _check_parquet(path)
        else:
            non_empty += os.path.getsize(path) > 0
    if not non_empty:
        names = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
        raise RankerError(f"{names}: empty input, no lines to preprocess")
    return non_empty


def _check_gzip(path: str) -> bool:
    """True when the file decompresses to at least one byte; RankerError when it is damaged."""
    any_data = False
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                any_data = True
    except EOFError:
        raise RankerError(f"{path}: truncated gzip (ends before its end-of-stream marker)") \
            from None
    except (OSError, zlib.error) as err:
        raise RankerError(f"{path}: corrupt gzip ({err})") from None
    return any_data


def _check_parquet(path: str) -> bool:
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows > 0
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RankerError(f"{path}: unreadable Parquet ({str(err).splitlines()[0]})") from None


def pipeline_options(beam_args: Sequence[str] | None) -> PipelineOptions:
    """Beam flags from the command line; FnApiRunner unless --runner says otherwise."""
    args = list(beam_args or [])
    options = PipelineOptions(args)
    known = options.get_all_options(retain_unknown_options=False)
    with_unknown = options.get_all_options(retain_unknown_options=True)
    unknown = sorted(set(with_unknown) - set(known))
    if unknown:
        raise RankerError(f"unknown option(s) {unknown}: neither a preprocess nor a Beam "
                          "pipeline flag")
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options


def _single_local_worker(options: PipelineOptions) -> bool:
    """The in-process runner with one worker: nothing to gain from spreading lines over workers."""
    runner = options.view_as(StandardOptions).runner
    workers = options.view_as(DirectOptions).direct_num_workers
    return str(runner).lower().endswith(("fnapirunner", "directrunner")) and workers == 1


# --- output --------------------------------------------------------------------------------------

def clear_output(output_dir: str) -> None:
    """Removes what a previous run wrote, so stale shards never mix with new ones."""
    os.makedirs(output_dir, exist_ok=True)
    for name in OUTPUT_DIRS:
        shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    for name in (STATS_FILENAME, _PIPELINE_STATS):
        path = os.path.join(output_dir, name)
        if os.path.exists(path):
            os.remove(path)


def finish_output(output_dir: str, files: Sequence[str], spec: fs.FeatureSpec,
                  spec_path: str) -> dict:
    """stats.json content, the resolved feature_spec.json, truth.json; drops an empty judged/."""
    pipeline_stats = os.path.join(output_dir, _PIPELINE_STATS)
    with open(pipeline_stats) as fh:
        stats = json.load(fh)
    os.remove(pipeline_stats)
    vocab_sizes = _vocabulary_sizes(output_dir, spec)
    resolved = spec.resolved(vocab_sizes)
    resolved.save(os.path.join(output_dir, fs.SPEC_FILENAME))
    if not stats["requests"][JUDGED]:
        shutil.rmtree(os.path.join(output_dir, JUDGED), ignore_errors=True)
    stats["vocabulary_sizes"] = vocab_sizes
    stats["inputs"] = list(files)
    stats["feature_spec"] = os.path.abspath(spec_path)
    stats["truth"] = _copy_truth(files, output_dir)
    return stats


def _vocabulary_sizes(output_dir: str, spec: fs.FeatureSpec) -> dict[str, int]:
    """Sizes of the written vocabularies; a feature that never had a value gets an empty file."""
    names = [f.name for f in spec.features if f.uses_vocabulary] + [fs.DEVICE]
    os.makedirs(os.path.join(output_dir, fs.VOCAB_DIR), exist_ok=True)
    sizes = {}
    for name in names:
        path = os.path.join(output_dir, fs.VOCAB_DIR, f"{name}.txt")
        if not os.path.exists(path):
            open(path, "w").close()
        sizes[name] = len(fs.read_vocabulary(path))
    return sizes


def _copy_truth(files: Sequence[str], output_dir: str) -> str | None:
    """truth.json from beside the logs (the simulator writes it) → DIR, for evaluate."""
    source = os.path.join(os.path.dirname(files[0]), TRUTH_FILENAME)
    target = os.path.join(output_dir, TRUTH_FILENAME)
    if not os.path.exists(source):
        if os.path.exists(target) and os.path.abspath(os.path.dirname(files[0])) != output_dir:
            os.remove(target)  # a previous run's truth does not describe these logs
        return None
    if os.path.abspath(source) != os.path.abspath(target):
        shutil.copyfile(source, target)
    return target


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


_progress = progress
