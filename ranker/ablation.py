"""`ranker ablation`: arms × seeds × data sets, trained and evaluated alike; report.md/json + plots.

An arm is a variant with optional overrides, written `variant[:key=value…]`, for example
`additive:bias-dropout=0.5` or `pal:loss=listwise:position-dropout=0`. Several `--data` folders
(comma-separated, e.g. worlds simulated at different logging qualities) are reported side by side.
Finished runs (a metrics.json in their folder) are reused, so an interrupted ablation resumes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

from ranker.errors import RankerError

DEFAULT_EPOCHS = 6
OVERRIDES = {"position-dropout": float, "bias-dropout": float, "loss": str, "learning-rate": float,
             "epochs": int}


@dataclasses.dataclass(frozen=True)
class Arm:
    label: str
    variant: str
    overrides: tuple[tuple[str, object], ...] = ()

    def train_kwargs(self, epochs: int) -> dict:
        kwargs = {"variant": self.variant, "epochs": epochs}
        for key, value in self.overrides:
            kwargs[key.replace("-", "_")] = value
        return kwargs


def parse_arm(text: str) -> Arm:
    from ranker.models.config import VARIANTS

    variant, *pairs = text.strip().split(":")
    if variant not in VARIANTS:
        raise RankerError(f"arm {text!r}: unknown variant {variant!r}; choose from {list(VARIANTS)}")
    overrides = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in OVERRIDES or not value:
            raise RankerError(f"arm {text!r}: expected key=value with key in {sorted(OVERRIDES)}")
        try:
            overrides.append((key, OVERRIDES[key](value)))
        except ValueError:
            raise RankerError(f"arm {text!r}: {key} takes a {OVERRIDES[key].__name__}") from None
    return Arm(text.strip(), variant, tuple(overrides))


def mean_std(values: list[float]) -> dict:
    arr = np.array([v for v in values if v is not None], dtype=float)
    if not len(arr):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(float(arr.mean()), 4), "std": round(float(arr.std(ddof=0)), 4), "n": len(arr)}


def _run_one(data_dir: str, arm: Arm, seed: int, run_dir: str, epochs: int) -> dict:
    from ranker.models import evaluate, train

    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as fh:
            return json.load(fh)
    kwargs = arm.train_kwargs(epochs)
    train.train(data_dir, run_dir, seed=seed, verbose=0, **kwargs)
    return evaluate.evaluate_to_file(data_dir, model_dir=run_dir, output=metrics_path)


def summarise(runs: list[dict]) -> dict:
    def pick(path):
        out = []
        for m in runs:
            value = m
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            out.append(value)
        return out

    summary = {
        "judged_ndcg@10": mean_std(pick(["judged", "ndcg@10"])),
        "click_auc": mean_std(pick(["clicks", "auc"])),
        "click_log_loss": mean_std(pick(["clicks", "log_loss"])),
        "propensity_error": mean_std(pick(["propensity_error"])),
    }
    curves = [m["propensity"] for m in runs if m.get("propensity")]
    if curves:
        summary["propensity_mean"] = {
            d: np.mean([c[d] for c in curves], axis=0).round(4).tolist() for d in curves[0]}
    return summary


def gap_recovered(arms: dict) -> dict | None:
    """Share of the naive → oracle gap in judged nDCG@10 that each other arm closes."""
    naive = arms.get("naive", {}).get("judged_ndcg@10", {}).get("mean")
    oracle = arms.get("oracle", {}).get("judged_ndcg@10", {}).get("mean")
    if naive is None or oracle is None or oracle <= naive:
        return None
    return {label: round((a["judged_ndcg@10"]["mean"] - naive) / (oracle - naive), 3)
            for label, a in arms.items() if label not in ("naive", "oracle")
            and a["judged_ndcg@10"]["mean"] is not None}


def _world(data_dir: str) -> dict:
    path = os.path.join(data_dir, "truth.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        truth = json.load(fh)
    return {k: truth.get(k) for k in ("world", "logging_quality", "click_model", "impressions",
                                       "clicks", "propensity")}


def run_ablation(data_dir: str, variants: list[str], seeds: int, output_dir: str,
                 epochs: int | None = None) -> dict:
    from ranker import report

    if seeds < 1:
        raise RankerError("--seeds must be at least 1")
    arms = [parse_arm(v) for v in variants]
    data_dirs = [d for d in data_dir.split(",") if d]
    for d in data_dirs:
        if not os.path.isdir(d):
            raise RankerError(f"{d}: no such data folder")
    results = {}
    for d in data_dirs:
        name = os.path.basename(os.path.normpath(d))
        per_arm = {}
        for arm in arms:
            runs = []
            for seed in range(seeds):
                run_dir = os.path.join(output_dir, "runs", name, arm.label.replace(":", "_"), f"seed{seed}")
                print(f"[ablation] {name} · {arm.label} · seed {seed}", file=sys.stderr, flush=True)
                runs.append(_run_one(d, arm, seed, run_dir, epochs or DEFAULT_EPOCHS))
            per_arm[arm.label] = summarise(runs)
        results[name] = {"data_dir": os.path.abspath(d), "world": _world(d), "arms": per_arm,
                         "gap_recovered": gap_recovered(per_arm)}
    out = {"seeds": seeds, "epochs": epochs or DEFAULT_EPOCHS, "datasets": results}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "report.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    plots = report.write_plots(out, output_dir)
    report.write_markdown(out, plots, os.path.join(output_dir, "report.md"))
    return {"report": os.path.join(output_dir, "report.md"), "plots": plots,
            "judged_ndcg@10": {n: {a: s["judged_ndcg@10"] for a, s in r["arms"].items()}
                               for n, r in results.items()}}
