"""One candidate arm against pal (the default) and naive, on a scoreboard run's worlds.

    python benchmarks/arm_vs_default.py --board scoreboard --arm pal:bias-dropout=0.5 \
        [--worlds synthetic-w0.9,synthetic-w0.2,synthetic-w0.5] [--train-seed 0]

For every simulation seed of each world, trains the arm (ranker.ablation's arm syntax) on the
scoreboard's data with one training seed, next to the scoreboard's pal and naive runs of that seed,
and prints judged nDCG@10 per half with paired-bootstrap intervals (ranker.stats): the validation
half is where a default would be chosen, the test half what is reported. Arms with
`propensities=harvested` need DATA/propensity_harvested.json; data preprocessed before preprocess
wrote it get it here, from the raw logs, with the same estimator (harvest_fit.harvest_units).
Writes BOARD/candidates/<arm>.json.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ranker import stats  # noqa: E402
from ranker.ablation import parse_arm, run_arm  # noqa: E402
from ranker.artifacts import HARVESTED_FILE, IMPRESSIONS_FILE, METRICS_FILE, read_json, write_json  # noqa: E402
from ranker.models import metrics as metrics_lib  # noqa: E402
from ranker.pipeline import harvest_fit  # noqa: E402

logger = logging.getLogger("arm_vs_default")
REFERENCES = ("pal", "naive")


def ensure_harvested(sim: Path) -> None:
    """DATA/propensity_harvested.json from the raw logs where preprocess predates it."""
    target = sim / "data" / HARVESTED_FILE
    if not target.exists():
        with gzip.open(sim / "logs" / IMPRESSIONS_FILE, "rt") as fh:
            write_json(str(target), harvest_fit.harvest_units(harvest_fit.units_from_lines(fh)))


def world_runs(board: Path, world: str, arm_text: str, train_seed: int) -> dict[str, list[dict]]:
    arm = parse_arm(arm_text)
    label = arm.dirname
    runs: dict[str, list[dict]] = {label: [], **{r: [] for r in REFERENCES}}
    for sim in sorted((board / "worlds" / world).glob("seed*")):
        seed = int(sim.name[len("seed"):])
        if "harvested" in arm_text:
            ensure_harvested(sim)
        metrics = run_arm(str(sim / "data"), arm, train_seed, str(sim / "runs" / label / f"seed{train_seed}"))
        runs[label].append({**metrics, "sim_seed": seed})
        for ref in REFERENCES:
            runs[ref].append({**read_json(str(sim / "runs" / ref / f"seed{train_seed}" / METRICS_FILE)), "sim_seed": seed})
        logger.info("%s %s %s: judged nDCG@10 %.4f", world, sim.name, label, metrics["judged"]["ndcg@10"])
    return runs


def compare(runs: dict[str, list[dict]]) -> dict:
    label = next(iter(runs))
    out = {}
    for half in metrics_lib.HALVES:
        paired = stats.Paired({a: stats.per_key_means(r, half, False) for a, r in runs.items()})
        out[half] = {"means": {a: paired.mean(a) for a in runs},
                     **{f"vs {ref}": paired.difference(label, ref) for ref in REFERENCES}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--board", required=True, help="a scoreboard run's --output folder")
    parser.add_argument("--arm", required=True, help="e.g. pal:bias-dropout=0.5 or pal:propensities=harvested")
    parser.add_argument("--worlds", default="synthetic-w0.9,synthetic-w0.2,synthetic-w0.5")
    parser.add_argument("--train-seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    board = Path(args.board)
    result = {w: compare(world_runs(board, w, args.arm, args.train_seed)) for w in args.worlds.split(",")}
    out = board / "candidates" / (parse_arm(args.arm).dirname + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for world, halves in result.items():
        test = halves["test"]
        print(f"{world}: " + ", ".join(f"{a} {m['mean']:.4f}" for a, m in test["means"].items())
              + "; " + "; ".join(f"{k}: {v['diff']:+.4f} [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] {v['verdict']}"
                                 for k, v in test.items() if k.startswith("vs")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
