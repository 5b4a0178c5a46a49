"""Throughput of `ranker preprocess` (Beam) against a plain single-process loop doing the same
work, on the same simulated impressions, at each size, in one run.

    .venv/bin/python benchmarks/bench_preprocess.py        # 300k and 5M; default and in-process
    .venv/bin/python benchmarks/bench_preprocess.py --impressions 1000000 --beam-args=""

(a) Beam: `run_preprocess` end to end (input checks, pipeline, vocabularies, stats, harvest,
    dead letters, publishing), with preprocess's default flags and with one in-process worker.
(b) Plain: the same work with the job's own functions in one process and no Beam (run_plain):
    parse every line, group by request in a dict, list rules, ELWC records per split into gzip
    TFRecords (tf.io.TFRecordWriter), vocabulary, stats and feature-stats counts, harvest units
    and pair sums, dead letters. It holds everything in memory; preprocess does not.
TensorFlow is imported before either clock starts (the plain loop writes with it; preprocess
does not need it). Rates are impressions (valid input lines) per wall-clock second; the load
average is printed because other work on the machine shares its cores.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import resource
import shlex
import shutil
import sys
import tempfile
import time

from ranker.artifacts import IMPRESSIONS_FILE, JUDGED_FILE, LOG_GLOB, SPEC_FILENAME

DEFAULT = ""  # preprocess's default: FnApiRunner, a worker process per core
IN_PROCESS = "--direct_num_workers=1 --direct_running_mode=in_memory"  # one in-process worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impressions", default="300000,5000000",
                        help="comma-separated sizes (at least this many impressions each)")
    parser.add_argument("--workdir", help="default: a temporary folder, removed afterwards")
    parser.add_argument("--beam-args", action="append",
                        help="Beam flags of one (a) run; repeat for several runs (default: one "
                             f"run with no flags, preprocess's default, and one with "
                             f"{IN_PROCESS!r})")
    parser.add_argument("--synthetic", action="store_true",
                        help="write synthetic JSONL instead of using the simulator")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--skip-beam", action="store_true")
    args = parser.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(workdir, exist_ok=True)
    import tensorflow  # noqa: F401  (the plain loop writes with it: off the clocks)

    rows = []
    try:
        for size in [int(n) for n in args.impressions.split(",") if n]:
            logs = os.path.join(workdir, f"logs_{size}")
            pattern = generate(logs, size, args.synthetic)
            results = {"input": pattern, "load_average_before": os.getloadavg()}
            if not args.skip_beam:
                results["beam"] = [
                    run_beam(pattern, os.path.join(workdir, "beam_out"), shlex.split(flags))
                    for flags in (args.beam_args or [DEFAULT, IN_PROCESS])]
            if not args.skip_plain:
                results["plain"] = run_plain(pattern, os.path.join(workdir, "plain_out"))
            results["load_average_after"] = os.getloadavg()
            report(results)
            rows.append(results)
            if not args.workdir:
                shutil.rmtree(logs, ignore_errors=True)
        summary(rows)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


# --- input ---------------------------------------------------------------------------------------

def generate(logs: str, impressions: int, synthetic: bool) -> str:
    """Writes the logs once (reused when the folder already holds them); returns the input glob."""
    marker = os.path.join(logs, "bench.json")
    wanted = {"impressions": impressions, "synthetic": synthetic}
    if os.path.exists(marker) and json.load(open(marker)) == wanted:
        return os.path.join(logs, LOG_GLOB)
    shutil.rmtree(logs, ignore_errors=True)
    started = time.perf_counter()
    simulate = None if synthetic else _simulator()
    if simulate is not None:
        queries = 2000
        sessions = -(-impressions // (queries * 10))  # 10 slots a session
        summary = simulate.simulate_to_dir(
            world="synthetic", letor_train=None, letor_test=None, sessions_per_query=sessions,
            logging_quality=0.5, click_model="pbm", devices=["desktop", "mobile", "tablet"],
            seed=0, output_dir=logs, num_queries=queries)
        os.remove(os.path.join(logs, JUDGED_FILE))  # keep the comparison to click logs
        print(f"simulated {summary['impressions']} impressions in "
              f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
    else:
        _write_synthetic(logs, impressions)
    with open(marker, "w") as fh:
        json.dump(wanted, fh)
    return os.path.join(logs, LOG_GLOB)


def _simulator():
    try:
        from ranker.simulation import simulate
    except ImportError:
        return None
    return simulate if hasattr(simulate, "simulate_to_dir") else None


def _write_synthetic(logs: str, impressions: int) -> None:
    """The log schema with one context categorical, two item categoricals, a numeric, a vector."""
    os.makedirs(logs, exist_ok=True)
    spec = {"max_list_size": 10,
            "context": [{"name": "query_id", "kind": "categorical", "vocabulary_size": 1000}],
            "item": [{"name": "category", "kind": "categorical"},
                     {"name": "brand", "kind": "categorical", "hash_buckets": 100},
                     {"name": "price", "kind": "numeric"},
                     {"name": "embedding", "kind": "vector", "length": 8}]}
    with open(os.path.join(logs, SPEC_FILENAME), "w") as fh:
        json.dump(spec, fh)
    rng = random.Random(0)
    devices = ["desktop", "mobile", "tablet"]
    with gzip.open(os.path.join(logs, IMPRESSIONS_FILE), "wt", compresslevel=1) as out:
        for request in range(-(-impressions // 10)):
            device = rng.choice(devices)
            query = f"q{rng.randrange(3000)}"
            for position in range(1, 11):
                out.write(json.dumps({
                    "request_id": f"r{request}", "position": position, "device_type": device,
                    "item_id": f"i{rng.randrange(100000)}",
                    "clicked": int(rng.random() < 0.4 / position), "timestamp": 1_700_000_000,
                    "context": {"query_id": query},
                    "features": {"category": f"c{rng.randrange(40)}",
                                 "brand": f"b{rng.randrange(500)}",
                                 "price": round(rng.lognormvariate(3, 1), 2),
                                 "embedding": [round(rng.gauss(0, 1), 3) for _ in range(8)]},
                }, separators=(",", ":")) + "\n")


# --- (a) Beam ------------------------------------------------------------------------------------

def run_beam(pattern: str, output: str, beam_args: list[str]) -> dict:
    from ranker.pipeline import preprocess

    cpu = _cpu_seconds()
    started = time.perf_counter()
    stats = preprocess.run_preprocess(pattern, output, None, beam_args)
    seconds = time.perf_counter() - started
    return {"impressions": stats["impressions_valid"], "lines": stats["lines_read"],
            "seconds": seconds, "rate": stats["impressions_valid"] / seconds,
            "cpu_seconds_all_processes": _cpu_seconds() - cpu, "beam_args": beam_args}


# --- (b) plain loop ------------------------------------------------------------------------------

def run_plain(pattern: str, output: str) -> dict:
    """The job's work without Beam, in one process, with the job's own functions: parse, group
    by request in a dict (everything in memory), list rules, ELWC records per split, vocabulary,
    stats and feature-stats counts, harvest units and pair sums, dead letters."""
    import glob

    import tensorflow as tf

    from ranker.artifacts import RECORD_SUFFIX, SPLITS
    from ranker.features import spec as fs
    from ranker.pipeline import parse, summaries
    from ranker.pipeline.feature_stats import _MomentsInBundle
    from ranker.pipeline.lists import CLICKED_KIND, JUDGED_KIND, split_of
    from ranker.pipeline.order import order_list
    from ranker.pipeline.partitioned import _add_units
    from ranker.pipeline.runtime import freeze_heap
    from ranker.pipeline.write import serialize_list

    files = sorted(glob.glob(pattern))
    spec = fs.load_spec(os.path.join(os.path.dirname(files[0]), fs.SPEC_FILENAME))
    shutil.rmtree(output, ignore_errors=True)
    os.makedirs(output)
    freeze_heap(after="beam")  # the GC setting the Beam DoFns use: like for like
    scopes = {fs.CONTEXT: parse.CONTEXT_KEY, fs.ITEM: parse.FEATURES_KEY}
    vocab_features = tuple((f.name, scopes[f.scope]) for f in spec.features if f.uses_vocabulary)
    moments = _MomentsInBundle(tuple((f.name, scopes[f.scope], f.kind) for f in spec.features),
                               max_lists=2**62)
    moments.start_bundle()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    requests, dead_letters = _plain_requests(files, spec)
    writers = {split: tf.io.TFRecordWriter(os.path.join(output, split + RECORD_SUFFIX),
                                           options="GZIP") for split in SPLITS}
    counts, vocab, units, written = collections.Counter(), collections.Counter(), {}, 0
    for request_id, (key, *located) in requests.items():
        located.sort(key=lambda e: (e[3][fs.POSITION], e[0], e[1]))
        kept, dead, truncated = order_list(located, spec.max_list_size)
        dead_letters += dead
        counts[("truncated",)] += truncated
        if not kept:
            continue
        kind = JUDGED_KIND if parse.is_judged(kept[0]) else CLICKED_KIND
        lst, split = (request_id, kind, kept), split_of(request_id, kind)
        writers[split].write(serialize_list(lst, spec))
        summaries._count_list(counts, lst, split)
        summaries._count_values(vocab, lst, vocab_features)
        for _ in moments.process(lst):
            pass
        if kind == CLICKED_KIND:
            _add_units(units, key, kept, spec.max_list_size)
        written += len(kept)
    for writer in writers.values():
        writer.close()
    with open(os.path.join(output, "rest.json"), "w") as fh:
        json.dump({"harvest": _plain_harvest(units),
                   "stats": summaries.format_stats(counts), "dead": dead_letters,
                   "vocab": sorted(vocab.items(), key=lambda kv: (-kv[1], kv[0]))}, fh)
    seconds = time.perf_counter() - started
    return {"impressions": written, "dead_letters": len(dead_letters), "seconds": seconds,
            "rate": written / seconds, "cpu_seconds": _cpu_seconds() - cpu}


def _plain_harvest(units: dict) -> dict:
    """Complete units → the propensity_harvested.json dict, by the job's CombineFn."""
    from ranker.pipeline import harvest_fit as hf
    from ranker.pipeline.harvest import _PairSumsFn

    pair_sums = _PairSumsFn(hf.DEFAULT_REPLICATES, hf.DEFAULT_MIN_INTERVENTIONS)
    accumulator = pair_sums.create_accumulator()
    for unit_cells in units.items():
        pair_sums.add_input(accumulator, unit_cells)
    return pair_sums.extract_output(accumulator)


def _plain_requests(files: list[str], spec) -> tuple[dict[str, list], list[dict]]:
    """Every valid line parsed, by request: {request_id: [query key, located, …]}; dead letters."""
    from ranker.features import spec as fs
    from ranker.pipeline import harvest_fit as hf
    from ranker.pipeline import parse
    from ranker.pipeline.read import iter_raw_lines

    requests: dict[str, list] = {}
    dead_letters = []
    for path in files:
        with open(path, "rb") as fh:
            for number, raw in enumerate(iter_raw_lines(fh, path), 1):
                impression, letter = parse.parse_line(raw, spec, path, number)
                if impression is None:
                    dead_letters.append(letter)
                    continue
                entry = requests.get(impression[fs.REQUEST_ID])
                if entry is None:
                    entry = requests[impression[fs.REQUEST_ID]] = [
                        None if parse.is_judged(impression)
                        else hf.query_key(json.loads(raw).get(parse.CONTEXT_KEY))]
                entry.append((path, number, None, impression))
    return requests, dead_letters


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def report(results: dict) -> None:
    print(f"input: {results['input']}")
    print(f"load average before/after: {results['load_average_before']} / "
          f"{results['load_average_after']} ({os.cpu_count()} cores)")
    plain = results.get("plain")
    for beam in results.get("beam", []):
        flags = " ".join(beam["beam_args"]) or "(no flags: preprocess's default)"
        print(f"(a) beam {flags}: {beam['impressions']} impressions in {beam['seconds']:.1f}s = "
              f"{beam['rate']:,.0f} impressions/s (CPU {beam['cpu_seconds_all_processes']:.1f}s, "
              f"all processes)")
    if plain:
        print(f"(b) plain single-process loop: {plain['impressions']} impressions in "
              f"{plain['seconds']:.1f}s = {plain['rate']:,.0f} impressions/s "
              f"(CPU {plain['cpu_seconds']:.1f}s)")
        for beam in results.get("beam", []):
            flags = " ".join(beam["beam_args"]) or "default"
            cpu_ratio = (plain["cpu_seconds"] / plain["impressions"]) / (
                beam["cpu_seconds_all_processes"] / beam["impressions"])
            print(f"ratio beam/plain ({flags}): {beam['rate'] / plain['rate']:.2f} wall-clock, "
                  f"{cpu_ratio:.2f} per CPU-second (less sensitive to other load)")
    print(json.dumps({k: v for k, v in results.items()}, default=str), flush=True)


def summary(rows: list[dict]) -> None:
    """One table of every size: rates and the wall-clock ratio to the plain loop."""
    print(f"\n{'impressions':>12} {'plain /s':>10} " + " ".join(
        f"{'beam ' + (' '.join(b['beam_args']) or 'default') + ' /s':>22} {'ratio':>6}"
        for b in rows[0].get("beam", [])))
    for row in rows:
        plain = row.get("plain", {}).get("rate")
        cells = [f"{b['rate']:>22,.0f} {b['rate'] / plain if plain else float('nan'):>6.2f}"
                 for b in row.get("beam", [])]
        print(f"{row['beam'][0]['impressions'] if row.get('beam') else '':>12} "
              f"{plain or float('nan'):>10,.0f} " + " ".join(cells))


if __name__ == "__main__":
    raise SystemExit(main())
