"""The scoreboard: every arm, and the peers a user would pick instead, on the same clicks.

    python benchmarks/scoreboard.py --output scoreboard [--sim-seeds 3] [--train-seeds 2]
                                    [--worlds synthetic-w0.2,…] [--workers 2]

Per world and simulation seed: `ranker simulate` (biased clicks, the full candidate lists of the
logged queries for the oracle, held-out judged queries), the same sessions with every shown item
examined (`--examine-all`: the unbiased-clicks reference), `ranker preprocess` of all three, then
every arm × training seed, each evaluated on the same judged lists. Judged lists are split by a
stable hash of their request id into a validation half (where the best tree configuration is
chosen) and a test half (what the tables report). Intervals: paired bootstrap over judged lists
pooled across simulation seeds (ranker.stats). Needs the bench extra (xgboost, lightgbm).
Writes OUT/scoreboard.json, OUT/scoreboard.md and plots; reruns reuse finished runs.
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import io
import json
import logging
import multiprocessing
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import scoreboard_clicks  # noqa: E402
import scoreboard_report  # noqa: E402

from ranker.ablation import Arm, run_arm  # noqa: E402
from ranker.artifacts import TRUTH_FILE, read_json  # noqa: E402

logger = logging.getLogger("scoreboard")
YAHOO = Path(__file__).resolve().parents[2] / "shared" / "data" / "yahoo_ltr_sample"
CUSTOM_DEVICES = "ios:0.5:1.2,android:0.3:0.9,web:0.2:0.5"
SYNTHETIC = ["--world", "synthetic", "--num-queries", "400", "--num-judged", "400",
             "--sessions-per-query", "50"]
WORLDS = {
    "synthetic-w0.2": SYNTHETIC + ["--logging-quality", "0.2"],
    "synthetic-w0.5": SYNTHETIC + ["--logging-quality", "0.5", "--devices", CUSTOM_DEVICES],
    "synthetic-w0.9": SYNTHETIC + ["--logging-quality", "0.9"],
    "cascade-w0.5": SYNTHETIC + ["--logging-quality", "0.5", "--click-model", "cascade"],
    "yahoo-w0.5": ["--world", "letor", "--letor-train", str(YAHOO / "rank.train"),
                   "--letor-test", str(YAHOO / "rank.test"), "--sessions-per-query", "100",
                   "--logging-quality", "0.5"],
}
IDS = "ids"  # the id-only world: click log-loss against click models (scoreboard_clicks)
FIXED_LISTS = {"yahoo-w0.5"}  # the judged lists are the same file in every simulation seed
NEURAL = ("naive", "additive", "pal", "ips", "dla")
TREES = ("xgboost", "xgboost-unbiased", "lightgbm", "lightgbm-position")
UNBIASED, ORACLE = "unbiased-clicks", "oracle"
# --train-seeds for the arms compared head to head, --other-train-seeds for the anchors and
# references; trees get one: with no subsampling they have no randomness to vary (checked: seeds 0
# and 1 give identical per-list nDCG).
MAIN_ARMS = ("naive", "additive", "pal")
DEFAULT_CANDIDATES = ("additive", "pal")  # `ranker train`'s default variant is chosen on validation


def _cli(args: list[str]) -> None:
    from ranker.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    if code:
        raise RuntimeError(f"ranker {' '.join(args)} exited {code}")


def prepare(world: str, sim_seed: int, root: Path, size_args: dict) -> dict[str, str]:
    """Simulates and preprocesses one world at one seed; returns the three data dirs."""
    base = root / world / f"seed{sim_seed}"
    dirs = {name: str(base / name) for name in ("data", "data_unbiased", "data_oracle")}
    if all((Path(d) / "stats.json").exists() for d in dirs.values()):
        return dirs
    sim = WORLDS[world] + size_args.get("all", []) + ["--seed", str(sim_seed)]
    if world not in FIXED_LISTS:
        sim += size_args.get("synthetic", [])
    _cli(["simulate", *sim, "--oracle-lists", "--output", str(base / "logs")])
    _cli(["simulate", *sim, "--examine-all", "--output", str(base / "logs_unbiased")])
    for logs, data in (("logs", "data"), ("logs_unbiased", "data_unbiased"),
                       ("logs/oracle", "data_oracle")):
        _cli(["preprocess", "--input", str(base / logs / "*.jsonl.gz"), "--output", dirs[data]])
    return dirs


def known_propensities(data_dir: str) -> str | None:
    """ips under cascade clicks: no position propensity exists, so ips gets the one a user would
    measure, the simulated examination rate relative to position 1 (floored at 1e-3)."""
    truth = read_json(str(Path(data_dir) / TRUTH_FILE))
    if truth.get("propensity") or not truth.get("examination_rate"):
        return None
    curves = {d: [max(r or 0.0, 1e-3) / max(rates[0], 1e-3) for r in rates]
              for d, rates in truth["examination_rate"].items()}
    path = Path(data_dir).parent / "examination_rate_propensities.json"
    path.write_text(json.dumps(curves))
    return str(path)


def arms_for(dirs: dict[str, str], trees: bool) -> list[Arm]:
    arms = [Arm(v, v) for v in NEURAL if v != "ips"]
    propensities = known_propensities(dirs["data"])
    arms.insert(3, Arm("ips", "ips", (("propensities", propensities),) if propensities else ()))
    arms.append(Arm(UNBIASED, "naive", (("train-data", dirs["data_unbiased"]),)))
    arms.append(Arm(ORACLE, "oracle", (("train-data", dirs["data_oracle"]), ("split", "judged"))))
    if trees:
        arms += [Arm(t, t) for t in TREES]
    return arms


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    logging.basicConfig(level=logging.WARNING)


def world_seed_task(world: str, sim_seed: int, root: str, train_seeds: int, trees: bool,
                    size_args: dict, other_seeds: int = 1) -> dict:
    """Everything of one (world, simulation seed): {arm: [metrics of each training seed]}."""
    dirs = prepare(world, sim_seed, Path(root), size_args)
    if train_seeds == 0:  # --prepare-only
        return {"world": world, "sim_seed": sim_seed, "runs": {}, "truth": {}}
    runs: dict[str, list] = {}
    for arm in arms_for(dirs, trees):
        for seed in range(train_seeds if arm.label in MAIN_ARMS else 1 if arm.is_tree else other_seeds):
            run_dir = Path(root) / world / f"seed{sim_seed}" / "runs" / arm.label / f"seed{seed}"
            metrics = run_arm(dirs["data"], arm, seed, str(run_dir))
            runs.setdefault(arm.label, []).append({**metrics, "sim_seed": sim_seed})
    truth = read_json(str(Path(dirs["data"]) / TRUTH_FILE))
    return {"world": world, "sim_seed": sim_seed, "runs": runs, "truth": truth}


def collect(worlds: list[str], sim_seeds: int, root: Path) -> tuple[dict, list]:
    """The finished runs on disk (--report-only): what a run would have returned, for the
    (world, seed)s whose data exist; unfinished runs are left out and the report says how many
    simulation seeds each world has."""
    results: dict = {}
    ids_tasks = []
    for world in worlds:
        for seed in range(sim_seeds):
            base = root / world / f"seed{seed}"
            if world == IDS:
                if (base / "runs").exists():
                    ids_tasks.append(scoreboard_clicks.collect_ids(base, seed))
                continue
            runs_dir = base / "runs"
            if not runs_dir.exists():
                continue
            entry = results.setdefault(world, {"runs": {}, "truths": []})
            order = {a: i for i, a in enumerate([*NEURAL, UNBIASED, ORACLE, *TREES])}
            for metrics in sorted(runs_dir.glob("*/seed*/metrics.json"),
                                  key=lambda m: (order.get(m.parent.parent.name, 99), str(m))):
                arm = metrics.parent.parent.name
                run = json.loads(metrics.read_text())
                entry["runs"].setdefault(arm, []).append({**run, "sim_seed": seed})
            entry["truths"].append(read_json(str(base / "data" / TRUTH_FILE)))
    return results, ids_tasks


def run_all(worlds: list[str], sim_seeds: int, train_seeds: int, root: Path, workers: int,
            trees: bool, size_args: dict, other_seeds: int = 1) -> dict:
    tasks = [(w, s) for s in range(sim_seeds) for w in worlds]  # seed-major: every world gets seeds 0, 1 first
    results: dict = {w: {"runs": {}, "truths": []} for w in worlds if w != IDS}
    ids_tasks: list = []
    ctx = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        pending = {(pool.submit(scoreboard_clicks.ids_task, s, str(root), train_seeds, _cli) if w == IDS
                    else pool.submit(world_seed_task, w, s, str(root), train_seeds, trees, size_args,
                                     min(other_seeds, train_seeds))): (w, s)
                   for w, s in tasks}
        for done in futures.as_completed(pending):
            try:
                out = done.result()
            except Exception:  # noqa: BLE001  one failed task must not lose the others; rerun resumes
                logger.exception("%s seed %d failed", *pending[done])
                continue
            logger.warning("finished %s seed %d", *pending[done])
            if pending[done][0] == IDS:
                ids_tasks.append(out)
                continue
            for arm, runs in out["runs"].items():
                results[out["world"]]["runs"].setdefault(arm, []).extend(runs)
            results[out["world"]]["truths"].append(out["truth"])
    return results, sorted(ids_tasks, key=lambda t: t["sim_seed"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for worlds/, scoreboard.md/.json, plots")
    parser.add_argument("--worlds", default=",".join([*WORLDS, IDS]), help="comma-separated subset")
    parser.add_argument("--sim-seeds", type=int, default=3, help="simulated worlds per world kind")
    parser.add_argument("--train-seeds", type=int, default=2, help="training seeds per arm and world")
    parser.add_argument("--other-train-seeds", type=int, default=2,
                        help="training seeds of ips, dla, unbiased clicks and the oracle (at most "
                             "--train-seeds; trees always one: they have no randomness)")
    parser.add_argument("--workers", type=int, default=2, help="parallel (world, seed) tasks")
    parser.add_argument("--no-trees", action="store_true", help="skip the tree peers (no bench extra)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs already finished under --output")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only simulate and preprocess every (world, seed); train nothing")
    parser.add_argument("--num-queries", type=int, default=None,
                        help="override the synthetic worlds' logged (and judged) queries")
    parser.add_argument("--sessions-per-query", type=int, default=None, help="override every world's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    worlds = [w for w in args.worlds.split(",") if w]
    unknown = sorted(set(worlds) - set(WORLDS) - {IDS})
    if unknown or args.sim_seeds < 1 or args.train_seeds < 1 or args.workers < 1:
        parser.error(f"unknown worlds {unknown}; choose from {[*WORLDS, IDS]}" if unknown
                     else "--sim-seeds, --train-seeds and --workers must be positive")
    size_args: dict = {}  # later flags win over the world's own
    if args.num_queries:
        size_args["synthetic"] = ["--num-queries", str(args.num_queries),
                                  "--num-judged", str(args.num_queries)]
    if args.sessions_per_query:
        size_args["all"] = ["--sessions-per-query", str(args.sessions_per_query)]
    root = Path(args.output)
    if args.report_only:
        results, ids_tasks = collect(worlds, args.sim_seeds, root / "worlds")
    else:
        results, ids_tasks = run_all(worlds, args.sim_seeds, 0 if args.prepare_only else args.train_seeds,
                                     root / "worlds", args.workers, not args.no_trees, size_args,
                                     args.other_train_seeds)
    if args.prepare_only:
        return 0
    board = scoreboard_report.build(results, FIXED_LISTS, DEFAULT_CANDIDATES, TREES if not args.no_trees else (),
                                    UNBIASED, args.sim_seeds, args.train_seeds)
    if ids_tasks:
        board["ids"] = scoreboard_clicks.summarise(ids_tasks)
    paths = scoreboard_report.write(board, root)
    print(json.dumps({"report": paths[0], "plots": paths[1:]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
