"""How `ranker preprocess` (default runner) grows with input: wall time and peak memory at 1M, 5M…

    .venv/bin/python benchmarks/bench_preprocess_scale.py [--impressions 1000000,5000000]
        [--sessions-per-query 20] [--workdir DIR] [--keep] [-- BEAM FLAGS…]

For each size: `ranker simulate` writes the logs (10 slots a session, so num_queries =
impressions / (10 × sessions per query)), then `ranker preprocess` runs in a subprocess while
this script samples the resident memory of its whole process tree from /proc every 0.1 s (Beam
may start worker processes). Peak tree RSS is the sum over live processes at the worst sample;
peak process RSS is the largest single one (what `/usr/bin/time -v` reports as max RSS); peak
driver RSS is the `ranker preprocess` process's own (it runs the runner; workers are its
children). Generated
files are deleted after each size unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ranker.artifacts import LOG_GLOB, STATS_FILE, read_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLOTS = 10  # shown items per simulated session


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> tuple[int, int, int]:
    """(sum, max, pid's own) of VmRSS in KiB over `pid` and all its descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            todo += _children(p)
        except OSError:
            pass
    sizes = [_rss_kib(p) for p in seen]
    return sum(sizes), max(sizes), sizes[0]


def run_sampled(cmd: list[str], log_path: str) -> dict:
    """Runs `cmd`, sampling its process tree's memory; wall seconds, peaks in MiB, max processes."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        job = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        peak_sum = peak_one = peak_driver = 0
        while job.poll() is None:
            total, largest, driver = tree_rss(job.pid)
            peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
            peak_driver = max(peak_driver, driver)
            time.sleep(0.1)
    wall = time.perf_counter() - start
    if job.returncode:
        with open(log_path) as fh:
            sys.exit(f"{' '.join(cmd[:4])} failed ({job.returncode}):\n{fh.read()[-3000:]}")
    return {"seconds": wall, "peak_tree_mib": peak_sum / 1024, "peak_process_mib": peak_one / 1024,
            "peak_driver_mib": peak_driver / 1024}


def _du_mib(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**20


def measure(impressions: int, sessions: int, workdir: str, beam_args: list[str]) -> dict:
    logs, out = os.path.join(workdir, f"logs_{impressions}"), os.path.join(workdir, f"pre_{impressions}")
    queries = max(1, round(impressions / (SLOTS * sessions)))
    ranker = [sys.executable, "-m", "ranker"]
    sim = run_sampled(ranker + ["simulate", "--num-queries", str(queries), "--sessions-per-query",
                                str(sessions), "--output", logs], os.path.join(workdir, "simulate.log"))
    pre = run_sampled(ranker + ["preprocess", "--input", os.path.join(logs, LOG_GLOB),
                                "--output", out] + beam_args, os.path.join(workdir, "preprocess.log"))
    stats = read_json(os.path.join(out, STATS_FILE))
    return {"impressions": impressions, "lines_read": stats["lines_read"],
            "input_mib": _du_mib(logs), "output_mib": _du_mib(out), "simulate_s": sim["seconds"],
            **pre, "lines_per_s": stats["lines_read"] / pre["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", default="1000000,5000000", help="comma-separated sizes")
    parser.add_argument("--sessions-per-query", type=int, default=20)
    parser.add_argument("--workdir", help="default: a temporary folder under /tmp")
    parser.add_argument("--keep", action="store_true", help="keep generated logs and outputs")
    args, beam_args = parser.parse_known_args()
    beam_args = [a for a in beam_args if a != "--"]
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_pre_scale_")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"beam args: {beam_args or '(default runner)'}", flush=True)
    try:
        for size in [int(s) for s in args.impressions.split(",") if s]:
            row = measure(size, args.sessions_per_query, workdir, beam_args)
            rows.append(row)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)
            if not args.keep:
                for name in (f"logs_{size}", f"pre_{size}"):
                    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{'lines read':>11} {'in MiB':>7} {'out MiB':>8} {'wall s':>8} {'lines/s':>9} "
          f"{'peak tree MiB':>14} {'peak proc MiB':>14} {'peak driver MiB':>16}")
    for r in rows:
        print(f"{r['lines_read']:>11,} {r['input_mib']:>7.0f} {r['output_mib']:>8.0f} {r['seconds']:>8.1f} "
              f"{r['lines_per_s']:>9,.0f} {r['peak_tree_mib']:>14.0f} {r['peak_process_mib']:>14.0f} "
              f"{r['peak_driver_mib']:>16.0f}")
    for a, b in zip(rows, rows[1:]):
        x = b["lines_read"] / a["lines_read"]
        print(f"{a['lines_read']:,} → {b['lines_read']:,} lines (×{x:.2f}): wall ×{b['seconds'] / a['seconds']:.2f}, "
              f"peak tree RSS ×{b['peak_tree_mib'] / a['peak_tree_mib']:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
