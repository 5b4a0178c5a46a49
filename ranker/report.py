"""Ablation and scoreboard reports for people: a markdown table per data set and PNG plots.

A data set's result (ranker.ablation.compare) holds, per arm, judged nDCG@10 with its 95% interval,
the difference to the baseline arm with a verdict, the share of a gap recovered, and per-run click
and propensity figures. Without judged lists the plot shows held-out click log-loss instead of an
empty nDCG chart; a propensity plot says "vs true" only where the truth is known.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _fmt_interval(stat: dict | None, key: str, spec: str) -> str:
    """`value [lo, hi]` of stat[key] and its 95% interval, each formatted with `spec`; – if absent."""
    if not stat or stat.get(key) is None:
        return "–"
    lo, hi = stat["ci95"]
    return f"{stat[key]:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def fmt_ci(stat: dict | None, digits: int = 3) -> str:
    return _fmt_interval(stat, "mean", f".{digits}f")


def fmt_diff(stat: dict | None) -> str:
    text = _fmt_interval(stat, "diff", "+.3f")
    return text if text == "–" else f"{text} {stat['verdict']}"


def fmt_share(stat: dict | None) -> str:
    return _fmt_interval(stat, "share", ".0%")


def fmt_std(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _has_judged(result: dict) -> bool:
    return any((a.get("judged_ndcg@10") or {}).get("mean") is not None for a in result["arms"].values())


REFERENCE_ARMS = ("unbiased-clicks", "oracle")
TREE_PREFIXES = ("xgboost", "lightgbm")


def _colour(label: str) -> str:
    """Our arms blue, tree peers orange, references (not deployable) grey."""
    if label.split(":")[0] in REFERENCE_ARMS:
        return "#7f7f7f"
    return "#dd8452" if label.startswith(TREE_PREFIXES) else "#4c72b0"


def plot_quality(name: str, result: dict, path: str) -> None:
    """Judged nDCG@10 with 95% intervals; where no list is judged, IPS click nDCG@10 (else the
    held-out click log-loss)."""
    labels = list(result["arms"])
    judged = _has_judged(result)
    if judged:
        stats = [result["arms"][a]["judged_ndcg@10"] for a in labels]
        means = [s["mean"] if s.get("mean") is not None else float("nan") for s in stats]
        errors = [[m - s["ci95"][0] if s.get("ci95") else 0 for m, s in zip(means, stats)],
                  [s["ci95"][1] - m if s.get("ci95") else 0 for m, s in zip(means, stats)]]
        ylabel, title = "judged nDCG@10 (95% interval)", "ranking quality on true relevance"
    elif any(a.get("ips_ndcg@10") for a in result["arms"].values()):
        stats = [result["arms"][a].get("ips_ndcg@10") or {} for a in labels]
        means = [s["mean"] if s.get("mean") is not None else float("nan") for s in stats]
        errors = [[m - s["ci95"][0] if s.get("ci95") else 0 for m, s in zip(means, stats)],
                  [s["ci95"][1] - m if s.get("ci95") else 0 for m, s in zip(means, stats)]]
        ylabel, title = "IPS click nDCG@10 (95% interval)", "ranking quality on clicks, position bias undone"
    else:
        stats = [result["arms"][a]["click_log_loss"] for a in labels]
        means = [s["mean"] if s.get("mean") is not None else float("nan") for s in stats]
        errors = [[s.get("std") or 0 for s in stats]] * 2
        ylabel, title = "held-out click log-loss (± std over seeds)", "click model fit (lower is better)"
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels)), 4))
    for i, label in enumerate(labels):  # points, not bars: the axis does not start at 0
        ax.errorbar([i], [means[i]], yerr=[[errors[0][i]], [errors[1][i]]], fmt="o", capsize=4,
                    color=_colour(label))
    ax.grid(axis="y", alpha=0.3)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    lows = [m - e for m, e in zip(means, errors[0]) if m == m]
    highs = [m + e for m, e in zip(means, errors[1]) if m == m]
    if lows:  # the intervals in view, with a margin
        margin = 0.1 * (max(highs) - min(lows)) + 0.005
        ax.set_ylim(max(0.0, min(lows) - margin), max(highs) + margin)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{name}: {title}\n(blue: ranker arms, orange: tree peers, grey: references)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _truth_curves(world: dict) -> tuple[dict, str]:
    """PBM: the true propensity; cascade: the simulated examination rate relative to position 1."""
    if world.get("propensity"):
        return world["propensity"], "truth"
    rates = world.get("examination_rate") or {}
    relative = {d: [(v or 0.0) / r[0] for v in r] for d, r in rates.items() if r and r[0]}
    return relative, "examination rate (cascade)"


def plot_propensity(name: str, result: dict, path: str) -> bool:
    from ranker.models.evaluate_view import plot_device_curves

    truth, truth_label = _truth_curves(result.get("world") or {})
    learned = {a: s["propensity_mean"] for a, s in result["arms"].items() if s.get("propensity_mean")}
    devices = sorted(set(truth) | {d for curves in learned.values() for d in curves})
    if not learned or not devices:
        return False
    panels = {device: ([(truth_label, truth[device], "k-", None)] if device in truth else [])
              + [(arm, curves[device], "o--", None) for arm, curves in learned.items() if device in curves]
              for device in devices}
    plot_device_curves(panels, f"{name}: learned propensity" + (f" vs {truth_label}" if truth else ""), path)
    return True


def write_plots(report: dict, output_dir: str) -> list[str]:
    paths = []
    for name, result in report["datasets"].items():
        quality_path = os.path.join(output_dir, f"ndcg_{name}.png")
        plot_quality(name, result, quality_path)
        paths.append(quality_path)
        curve_path = os.path.join(output_dir, f"propensity_{name}.png")
        if plot_propensity(name, result, curve_path):
            paths.append(curve_path)
    return paths


def describe_world(world: dict) -> str:
    """One line on what the data is; only what is known (no 'None' for logs without a truth)."""
    labels = (("world", "world {}"), ("logging_quality", "logging quality {}"),
              ("click_model", "click model {}"), ("impressions", "{} impressions"), ("clicks", "{} clicks"))
    parts = [text.format(world[key]) for key, text in labels if world.get(key) is not None]
    if world.get("devices"):
        parts.append("devices " + ", ".join(world["devices"]))
    if parts:
        return ", ".join(parts)
    return ("click logs with known propensities (truth.json)" if world.get("propensity")
            else "click logs without a simulation's truth.json")


def table(result: dict, baseline: str = "naive") -> list[str]:
    lines = [f"| arm | runs | judged nDCG@10 [95% CI] | vs {baseline} | IPS click nDCG@10 [95% CI] "
             f"| vs {baseline} | gap recovered | click log-loss | propensity error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, s in result["arms"].items():
        lines.append(f"| {arm} | {s.get('runs', '–')} | {fmt_ci(s.get('judged_ndcg@10'))} "
                     f"| {fmt_diff(s.get('vs_' + baseline))} | {fmt_ci(s.get('ips_ndcg@10'))} "
                     f"| {fmt_diff(s.get('ips_vs_' + baseline))} "
                     f"| {fmt_share(s.get('gap_recovered'))} | {fmt_std(s.get('click_log_loss'))} "
                     f"| {fmt_std(s.get('propensity_error'))} |")
    return lines


def write_markdown(report: dict, plots: list[str], path: str) -> None:
    lines = ["# Ablation", "",
             f"{report['seeds']} training seeds per arm; judged nDCG@10 is the mean over judged lists "
             "with a 95% interval from a paired bootstrap over lists (each list first averaged over "
             "seeds); IPS click nDCG@10 the same over the eval split's logged lists (clicks weighted "
             "by 1 / propensity); click log-loss and propensity error are mean ± std over runs.", ""]
    for name, result in report["datasets"].items():
        lines += [f"## {name}", "", describe_world(result.get("world") or {}),
                  f"({result['lists']} judged lists)" if result.get("lists") else
                  "(no judged lists: IPS click nDCG@10 on the eval split's logged lists)", ""]
        lines += table(result)
        lines.append("")
        for plot in plots:
            if os.path.basename(plot).endswith(f"_{name}.png"):
                lines.append(f"![{os.path.basename(plot)}]({os.path.basename(plot)})")
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def plot_run(metrics: dict, path: str) -> str:
    """`ranker run`'s plot: judged nDCG@10 and IPS click nDCG@10 of each variant, 95% intervals."""
    from ranker.stats import Paired

    panels = [("judged nDCG@10", "judged_per_list"), ("IPS click nDCG@10", "ips_per_list")]
    fig, axes = plt.subplots(1, len(panels), figsize=(8, 3.4))
    for ax, (title, key) in zip(axes, panels):
        values = {v: dict(zip(m[key]["request_id"], m[key]["ndcg@10"])) for v, m in metrics.items() if m.get(key)}
        paired = Paired(values) if values else None
        for i, variant in enumerate(values):
            stat = paired.mean(variant)
            if key == "ips_per_list":  # the ratio's own interval (evaluate's), not one of its parts
                stat = {"mean": metrics[variant]["ips"]["ndcg@10"], "ci95": metrics[variant]["ips"]["ci95"]}
            ax.errorbar([i], [stat["mean"]], yerr=[[stat["mean"] - stat["ci95"][0]], [stat["ci95"][1] - stat["mean"]]],
                        fmt="o", capsize=5, color=_colour(variant))
        ax.set_xticks(range(len(values)), list(values))
        ax.set_xlim(-0.6, len(values) - 0.4)
        ax.set_title(title + (" (95% interval)" if values else ": no data"), fontsize=10)
        if len(values) == 2:  # the paired change says more than two overlapping intervals
            first, second = values
            change = paired.difference(second, first)
            ax.set_xlabel(f"{second} − {first}, paired: {change['diff']:+.4f} "
                          f"[{change['ci95'][0]:+.4f}, {change['ci95'][1]:+.4f}] {change['verdict']}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("ranker run: the naive and the debiased model on the same data", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
