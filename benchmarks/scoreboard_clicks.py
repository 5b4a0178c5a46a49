"""The id-only world of the scoreboard: the two-tower model against classic click models.

A search-log-like world (`ranker simulate --world ids`: query ids and document ids only, a
query × doc cross in the spec, many sessions per query). The measure is held-out click log-loss
over every impression of the eval split (sessions never trained on), the quantity PBM and UBM are
fitted for. Intervals: each simulation seed gives one paired difference (ours, averaged over
training seeds, minus the click model); mean and a 95% t-interval over the simulation seeds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats as sps

import click_models
from ranker.ablation import Arm, run_arm
from ranker.artifacts import STATS_FILE, read_json

IDS_WORLD = ["--world", "ids", "--num-queries", "500", "--num-judged", "100",
             "--sessions-per-query", "50", "--logging-quality", "0.5"]
NEURAL = ("naive", "additive", "pal")
CLICK_MODELS = click_models.MODELS


def ids_task(sim_seed: int, root: str, train_seeds: int, cli) -> dict:
    base = Path(root) / "ids" / f"seed{sim_seed}"
    data = base / "data"
    if not (data / "stats.json").exists():
        cli(["simulate", *IDS_WORLD, "--seed", str(sim_seed), "--output", str(base / "logs")])
        cli(["preprocess", "--input", str(base / "logs" / "*.jsonl.gz"), "--output", str(data)])
    if not train_seeds:  # --prepare-only
        return {"sim_seed": sim_seed, "log_loss": {}, "impressions": {}}
    for variant in NEURAL:
        for seed in range(train_seeds):
            run_arm(str(data), Arm(variant, variant), seed, str(base / "runs" / variant / f"seed{seed}"))
    return collect_ids(base, sim_seed)


def collect_ids(base: Path, sim_seed: int) -> dict:
    """One seed of the id-only world from disk: finished neural runs, click models refitted."""
    data = base / "data"
    out: dict = {}
    for metrics in sorted((base / "runs").glob("*/seed*/metrics.json")):
        out.setdefault(metrics.parent.parent.name, []).append(
            json.loads(metrics.read_text())["clicks"]["log_loss"])
    for model in CLICK_MODELS:
        out[model] = [click_models.fit_and_score(model, str(data))["log_loss"]]
    impressions = read_json(str(data / STATS_FILE))["impressions"]
    return {"sim_seed": sim_seed, "log_loss": out, "impressions": impressions}


def _t_interval(values: list[float]) -> list[float] | None:
    if len(values) < 2:
        return None
    half = sps.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return [round(float(np.mean(values) - half), 5), round(float(np.mean(values) + half), 5)]


def summarise(tasks: list[dict], reference: str = "pbm") -> dict:
    arms = [a for a in tasks[0]["log_loss"] if all(t["log_loss"].get(a) for t in tasks)]
    per_seed = {a: [float(np.mean(t["log_loss"][a])) for t in tasks] for a in arms}
    out = {}
    for arm in arms:
        diffs = [a - b for a, b in zip(per_seed[arm], per_seed[reference])]
        interval = _t_interval(diffs)
        verdict = ("no interval" if interval is None else "lower (better)" if interval[1] < 0
                   else "higher (worse)" if interval[0] > 0 else "no difference")
        out[arm] = {"log_loss": round(float(np.mean(per_seed[arm])), 5), "per_seed": per_seed[arm],
                    f"minus_{reference}": round(float(np.mean(diffs)), 5), "ci95": interval,
                    "verdict": verdict if arm != reference else "–"}
    return {"reference": reference, "simulation_seeds": len(tasks), "arms": out,
            "eval_impressions": [t["impressions"].get("eval") for t in tasks]}


def markdown(summary: dict) -> list[str]:
    ref = summary["reference"]
    lines = ["## ids (query id × doc id only)", "",
             f"Held-out click log-loss on the eval split, {summary['simulation_seeds']} simulation seeds "
             f"(eval impressions per seed: {summary['eval_impressions']}); difference to {ref} with a 95% "
             "t-interval over simulation seeds.", "",
             f"| model | click log-loss | − {ref} [95% CI] | verdict |", "|---|---|---|---|"]
    for arm, s in sorted(summary["arms"].items(), key=lambda kv: kv[1]["log_loss"]):
        ci = s["ci95"]
        ci_text = f"{s['minus_' + ref]:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "–"
        lines.append(f"| {arm} | {s['log_loss']:.4f} | {ci_text} | {s['verdict']} |")
    return lines
