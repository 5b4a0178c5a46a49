"""`ranker ablation`: arms × training seeds × data sets, trained and evaluated alike; report + plots.

An arm is a variant with optional overrides, written `variant[:key=value…]`, for example
`additive:bias-dropout=0.5` or `pal:loss=listwise:position-dropout=0`. Two keys route the training
data: `train-data=DIR` trains on another preprocess output (e.g. unbiased clicks of the same
sessions) and `split=judged` trains on that data's judged split (the oracle on full candidate lists);
evaluation is always on the data set of the row. Tree peers (`xgboost`, `xgboost-unbiased`,
`lightgbm`, `lightgbm-position`; the `bench` extra) are arms too. Finished runs (a metrics.json in
their folder) are reused, so an interrupted ablation resumes.

Numbers are means over judged lists with 95% intervals from a paired bootstrap over the lists
(ranker.stats); each list's value is first averaged over the training seeds.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np

from ranker import stats
from ranker.artifacts import METRICS_FILE, TRUTH_FILE, read_json
from ranker.errors import RankerError

logger = logging.getLogger(__name__)

REPORT_JSON, REPORT_MD = "report.json", "report.md"
BASELINE_ARM = "naive"
OVERRIDES = {"position-dropout": float, "bias-dropout": float, "loss": str, "learning-rate": float,
             "epochs": int, "train-data": str, "split": str, "bias-learning-rate": float,
             "lr-schedule": str, "min-steps": int, "patience": int, "ips-clip": float,
             "propensities": str, "cross-l2": float, "propensity-prior-weight": float}


DEFAULT_ARMS = ("naive", "position-feature", "additive", "pal")


@dataclasses.dataclass(frozen=True)
class AblationOptions:
    """`ranker ablation`: arms × training seeds on one or more preprocess outputs."""

    data_dir: str  # preprocess output(s), comma-separated: one row each
    output_dir: str  # report.md, report.json, plots, runs/
    variants: tuple[str, ...] = DEFAULT_ARMS  # arms: variant[:key=value…] or a tree peer
    seeds: int = 3  # training seeds per arm
    epochs: int | None = None  # override train's epoch budget
    gap_reference: str | None = None  # the arm at the top of the gap naive → reference

    def check(self) -> list["Arm"]:
        """The parsed arms, once every option is checked."""
        if self.seeds < 1:
            raise RankerError("--seeds must be at least 1")
        arms = [parse_arm(v) for v in self.variants]
        labels = [a.label for a in arms]
        if self.gap_reference and self.gap_reference not in labels:
            raise RankerError(f"--gap-reference {self.gap_reference!r} is not one of the arms {labels}")
        for d in self.data_dirs:
            if not os.path.isdir(d):
                raise RankerError(f"{d}: no such data folder")
        return arms

    @property
    def data_dirs(self) -> list[str]:
        return [d for d in self.data_dir.split(",") if d]


def _tree_arms() -> tuple[str, ...]:
    from ranker.peers import TREE_ARMS

    return TREE_ARMS


@dataclasses.dataclass(frozen=True)
class Arm:
    label: str
    variant: str
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def dirname(self) -> str:
        """The arm's run folder name (no ':', '/' or '=')."""
        return self.label.replace(":", "_").replace("/", "_").replace("=", "-")

    @property
    def is_tree(self) -> bool:
        return self.variant in _tree_arms()

    def option(self, key: str, default=None):
        return dict(self.overrides).get(key, default)

    def train_kwargs(self, epochs: int | None = None) -> dict:
        kwargs = {"variant": self.variant}
        if epochs:
            kwargs["epochs"] = epochs
        for key, value in self.overrides:
            if key != "train-data":
                kwargs[key.replace("-", "_")] = value
        return kwargs


def parse_arm(text: str) -> Arm:
    from ranker.models.config import VARIANTS

    variant, *pairs = text.strip().split(":")
    if variant not in VARIANTS and variant not in _tree_arms():
        raise RankerError(f"arm {text!r}: unknown variant {variant!r}; choose from "
                          f"{list(VARIANTS) + list(_tree_arms())}")
    overrides = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in OVERRIDES or not value:
            raise RankerError(f"arm {text!r}: expected key=value with key in {sorted(OVERRIDES)}")
        try:
            overrides.append((key, OVERRIDES[key](value)))
        except ValueError:
            raise RankerError(f"arm {text!r}: {key} takes a {OVERRIDES[key].__name__}") from None
    if variant in _tree_arms() and overrides:
        raise RankerError(f"arm {text!r}: tree arms take no overrides")
    return Arm(text.strip(), variant, tuple(overrides))


def mean_std(values: list) -> dict:
    arr = np.array([v for v in values if v is not None], dtype=float)
    if not len(arr):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(float(arr.mean()), 4), "std": round(float(arr.std(ddof=0)), 4), "n": len(arr)}


def run_arm(data_dir: str, arm: Arm, seed: int, run_dir: str, epochs: int | None = None) -> dict:
    """Trains one arm (or reuses its finished run) and evaluates it on `data_dir`."""
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    finished = read_json(metrics_path)
    if finished is not None:
        return finished
    os.makedirs(run_dir, exist_ok=True)
    if arm.is_tree:
        from ranker import peers

        threads = int(os.environ.get("OMP_NUM_THREADS", "0"))  # 0: every core
        metrics = peers.train_and_score(arm.variant, data_dir, seed, num_threads=threads)
        with open(metrics_path, "w") as fh:
            json.dump(metrics, fh)
        return metrics
    from ranker.models import evaluate, train

    train.train(arm.option("train-data", data_dir), run_dir, seed=seed, verbose=0,
                **arm.train_kwargs(epochs))
    return evaluate.evaluate_to_file(data_dir, model_dir=run_dir, output=metrics_path)


def _pick(runs: list[dict], *path):
    out = []
    for run in runs:
        value = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out.append(value)
    return out


def summarise_runs(runs: list[dict]) -> dict:
    """Per-run figures of one arm (mean ± std over its runs) and its mean learned propensity."""
    summary = {
        "runs": len(runs),
        "click_auc": mean_std(_pick(runs, "clicks", "auc")),
        "click_log_loss": mean_std(_pick(runs, "clicks", "log_loss")),
        "propensity_error": mean_std(_pick(runs, "propensity_error")),
    }
    curves = [m["propensity"] for m in runs if m.get("propensity")]
    if curves:
        summary["propensity_mean"] = {
            d: np.mean([c[d] for c in curves], axis=0).round(4).tolist() for d in curves[0]}
    return summary


def compare(runs_by_arm: dict[str, list[dict]], half: str | None, fixed_lists: bool,
            baseline: str = BASELINE_ARM, gap_reference: str | None = None) -> dict:
    """judged nDCG@10 and IPS click nDCG@10 per arm with intervals, each arm against the baseline,
    gap recovered."""
    values = {arm: stats.per_key_means(runs, half, fixed_lists) for arm, runs in runs_by_arm.items()}
    values = {arm: v for arm, v in values.items() if v}
    paired = stats.Paired(values)
    ips_values = {arm: v for arm, runs in runs_by_arm.items()
                  if (v := stats.per_key_means(runs, None, fixed_lists, block="ips_per_list"))}
    ips = stats.Paired(ips_values) if ips_values else None
    arms = {}
    for arm, runs in runs_by_arm.items():
        entry = summarise_runs(runs)
        if arm in ips_values:
            entry["ips_ndcg@10"] = ips.mean(arm)
            if baseline in ips_values and arm != baseline:
                entry["ips_vs_" + baseline] = ips.difference(arm, baseline)
        entry["judged_ndcg@10"] = paired.mean(arm) if arm in values else {"mean": None, "n": 0}
        if arm in values and baseline in values and arm != baseline:
            entry["vs_" + baseline] = paired.difference(arm, baseline)
        if gap_reference in values and baseline in values and arm not in (baseline, gap_reference) \
                and arm in values:
            entry["gap_recovered"] = paired.gap_recovered(arm, baseline, gap_reference)
        arms[arm] = entry
    return {"half": half or "all", "lists": paired.n, "arms": arms}


def _world(data_dir: str) -> dict:
    truth = read_json(os.path.join(data_dir, TRUTH_FILE))
    if truth is None:
        return {}
    keys = ("world", "logging_quality", "click_model", "impressions", "clicks", "propensity",
            "examination_rate", "devices")
    return {k: truth.get(k) for k in keys if truth.get(k) is not None}


def run_ablation(data_dir: str, variants, seeds: int, output_dir: str, **options) -> dict:
    """ablate(AblationOptions(…)): the report's paths and judged nDCG@10 per data set and arm."""
    return ablate(AblationOptions(data_dir, output_dir, tuple(variants), seeds, **options))


def ablate(opts: AblationOptions) -> dict:
    from ranker import report

    arms = opts.check()
    epochs, output_dir = opts.epochs, opts.output_dir
    results = {}
    for d in opts.data_dirs:
        name = os.path.basename(os.path.normpath(d))
        runs_by_arm = {}
        for arm in arms:
            runs = []
            for seed in range(opts.seeds):
                run_dir = os.path.join(output_dir, "runs", name, arm.dirname, f"seed{seed}")
                logger.info("%s · %s · seed %d", name, arm.label, seed)
                runs.append({**run_arm(d, arm, seed, run_dir, epochs), "sim_seed": 0})
            runs_by_arm[arm.label] = runs
        results[name] = {"data_dir": os.path.abspath(d), "world": _world(d),
                         **compare(runs_by_arm, None, fixed_lists=True, gap_reference=opts.gap_reference)}
    out = {"seeds": opts.seeds, "epochs": epochs, "datasets": results}
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, REPORT_JSON), "w") as fh:
        json.dump(out, fh, indent=2)
    plots = report.write_plots(out, output_dir)
    report.write_markdown(out, plots, os.path.join(output_dir, REPORT_MD))
    return {"report": os.path.join(output_dir, REPORT_MD), "plots": plots,
            "judged_ndcg@10": {n: {a: s["judged_ndcg@10"] for a, s in r["arms"].items()}
                               for n, r in results.items()}}
