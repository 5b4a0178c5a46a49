"""The ablation report for people: a markdown table per data set and two kinds of PNG plots."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(stat: dict) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def plot_ndcg(name: str, result: dict, path: str) -> None:
    labels = list(result["arms"])
    means = [result["arms"][a]["judged_ndcg@10"]["mean"] or 0 for a in labels]
    stds = [result["arms"][a]["judged_ndcg@10"]["std"] or 0 for a in labels]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    low = min(m - s for m, s in zip(means, stds))
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(means) + 0.05))
    ax.set_ylabel("judged nDCG@10 (mean ± std over seeds)")
    ax.set_title(f"{name}: ranking quality on true relevance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_propensity(name: str, result: dict, path: str) -> bool:
    truth = (result.get("world") or {}).get("propensity") or {}
    learned = {a: s["propensity_mean"] for a, s in result["arms"].items() if s.get("propensity_mean")}
    devices = sorted(set(truth) | {d for curves in learned.values() for d in curves})
    if not learned or not devices:
        return False
    fig, axes = plt.subplots(1, len(devices), figsize=(4.2 * len(devices), 3.8), squeeze=False)
    for ax, device in zip(axes[0], devices):
        if device in truth:
            ax.plot(range(1, len(truth[device]) + 1), truth[device], "k-", lw=2.5, label="truth")
        for arm, curves in learned.items():
            if device in curves:
                ax.plot(range(1, len(curves[device]) + 1), curves[device], "o--", ms=3, label=arm)
        ax.set_title(device)
        ax.set_xlabel("position")
        ax.set_ylim(0, 1.1)
    axes[0][0].set_ylabel("examination relative to position 1")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{name}: learned vs true propensity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(report: dict, output_dir: str) -> list[str]:
    paths = []
    for name, result in report["datasets"].items():
        ndcg_path = os.path.join(output_dir, f"ndcg_{name}.png")
        plot_ndcg(name, result, ndcg_path)
        paths.append(ndcg_path)
        curve_path = os.path.join(output_dir, f"propensity_{name}.png")
        if plot_propensity(name, result, curve_path):
            paths.append(curve_path)
    return paths


def write_markdown(report: dict, plots: list[str], path: str) -> None:
    lines = ["# Ablation", "",
             f"{report['seeds']} seeds per arm, {report['epochs']} epochs; mean ± std over seeds.", ""]
    for name, result in report["datasets"].items():
        world = result.get("world") or {}
        lines += [f"## {name}", "",
                  f"world: {world.get('world')}, logging quality {world.get('logging_quality')}, "
                  f"click model {world.get('click_model')}, {world.get('impressions')} impressions, "
                  f"{world.get('clicks')} clicks", "",
                  "| arm | judged nDCG@10 | click AUC | click log-loss | propensity error |",
                  "|---|---|---|---|---|"]
        for arm, s in result["arms"].items():
            lines.append(f"| {arm} | {_fmt(s['judged_ndcg@10'])} | {_fmt(s['click_auc'])} | "
                         f"{_fmt(s['click_log_loss'])} | {_fmt(s['propensity_error'])} |")
        if result.get("gap_recovered"):
            shares = ", ".join(f"{a}: {v:.0%}" for a, v in result["gap_recovered"].items())
            lines += ["", f"Share of the naive → oracle gap closed: {shares}"]
        lines.append("")
        for plot in plots:
            if os.path.basename(plot).endswith(f"_{name}.png"):
                lines.append(f"![{os.path.basename(plot)}]({os.path.basename(plot)})")
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
