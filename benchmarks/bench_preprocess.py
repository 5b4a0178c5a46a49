"""Throughput of `ranker preprocess` (Beam) against a plain single-process loop doing the same
parsing and ELWC serialization, on the same ≥500k simulated impressions, in one run.

    .venv/bin/python benchmarks/bench_preprocess.py          # 500k; Beam in-process and 2 processes
    .venv/bin/python benchmarks/bench_preprocess.py --beam-args="" --impressions 1000000

(a) Beam: `run_preprocess` end to end (input checks, pipeline, vocabularies, stats, dead letters).
(b) Plain: for each line `parse_line`, group by request in a dict, then per list `build_elwc(...)
    .SerializeToString()` into gzip TFRecords (tf.io.TFRecordWriter), train/eval by the same hash.
TensorFlow is imported before either clock starts (both need it; Beam worker processes still
import it themselves). Rates are impressions (valid input lines) per wall-clock second; the load
average is printed because other work on the machine shares its cores.
"""
from __future__ import annotations

import argparse
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

IN_PROCESS = ""  # FnApiRunner, one in-process worker: preprocess's default
TWO_PROCESSES = "--direct_num_workers=2 --direct_running_mode=multi_processing"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impressions", type=int, default=500_000, help="at least this many")
    parser.add_argument("--workdir", help="default: a temporary folder, removed afterwards")
    parser.add_argument("--beam-args", action="append",
                        help="Beam flags of one (a) run; repeat for several runs (default: one "
                             f"run with no flags and one with {TWO_PROCESSES!r})")
    parser.add_argument("--synthetic", action="store_true",
                        help="write synthetic JSONL instead of using the simulator")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--skip-beam", action="store_true")
    args = parser.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(workdir, exist_ok=True)
    try:
        logs = os.path.join(workdir, "logs")
        pattern = generate(logs, args.impressions, args.synthetic)
        import tensorflow as tf  # noqa: F401  (both sides need it; keep its import off the clocks)

        from ranker.features import codec  # noqa: F401

        results = {"input": pattern, "load_average_before": os.getloadavg()}
        if not args.skip_beam:
            results["beam"] = [
                run_beam(pattern, os.path.join(workdir, "beam_out"), shlex.split(flags))
                for flags in (args.beam_args or [IN_PROCESS, TWO_PROCESSES])]
        if not args.skip_plain:
            results["plain"] = run_plain(pattern, os.path.join(workdir, "plain_out"))
        results["load_average_after"] = os.getloadavg()
        report(results)
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
    import glob

    import tensorflow as tf

    from ranker.artifacts import EVAL, RECORD_SUFFIX, TRAIN
    from ranker.features import codec
    from ranker.features import spec as fs
    from ranker.pipeline import parse
    from ranker.pipeline.lists import CLICKED_KIND, split_of
    from ranker.pipeline.read import iter_raw_lines
    from ranker.pipeline.runtime import freeze_heap

    files = sorted(glob.glob(pattern))
    spec = fs.load_spec(os.path.join(os.path.dirname(files[0]), fs.SPEC_FILENAME))
    shutil.rmtree(output, ignore_errors=True)
    os.makedirs(output)
    freeze_heap(after="tensorflow")  # the GC setting the Beam DoFns use: like for like
    cpu = _cpu_seconds()
    started = time.perf_counter()
    lists: dict[str, dict[int, dict]] = {}
    dead = 0
    for path in files:
        with open(path, "rb") as fh:
            for number, raw in enumerate(iter_raw_lines(fh, path), 1):
                impression, letter = parse.parse_line(raw, spec, path, number)
                if impression is None:
                    dead += 1
                    continue
                positions = lists.setdefault(impression[fs.REQUEST_ID], {})
                positions.setdefault(impression[fs.POSITION], impression)
    writers = {split: tf.io.TFRecordWriter(os.path.join(output, split + RECORD_SUFFIX),
                                           options="GZIP") for split in (TRAIN, EVAL)}
    written = 0
    for request_id, positions in lists.items():
        impressions = [positions[p] for p in sorted(positions)]
        record = codec.build_elwc(impressions, spec).SerializeToString(deterministic=True)
        writers[split_of(request_id, CLICKED_KIND)].write(record)
        written += len(impressions)
    for writer in writers.values():
        writer.close()
    seconds = time.perf_counter() - started
    return {"impressions": written, "dead_letters": dead, "seconds": seconds,
            "rate": written / seconds, "cpu_seconds": _cpu_seconds() - cpu}


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
        flags = " ".join(beam["beam_args"]) or "(no flags: FnApiRunner in-process)"
        print(f"(a) beam {flags}: {beam['impressions']} impressions in {beam['seconds']:.1f}s = "
              f"{beam['rate']:,.0f} impressions/s (CPU {beam['cpu_seconds_all_processes']:.1f}s, "
              f"all processes)")
    if plain:
        print(f"(b) plain single-process loop: {plain['impressions']} impressions in "
              f"{plain['seconds']:.1f}s = {plain['rate']:,.0f} impressions/s "
              f"(CPU {plain['cpu_seconds']:.1f}s)")
        for beam in results.get("beam", []):
            flags = " ".join(beam["beam_args"]) or "in-process"
            cpu_ratio = (plain["cpu_seconds"] / plain["impressions"]) / (
                beam["cpu_seconds_all_processes"] / beam["impressions"])
            print(f"ratio beam/plain ({flags}): {beam['rate'] / plain['rate']:.2f} wall-clock, "
                  f"{cpu_ratio:.2f} per CPU-second (less sensitive to other load)")
    print(json.dumps({k: v for k, v in results.items()}, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
