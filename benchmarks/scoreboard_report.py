"""Turns the scoreboard's runs into tables with intervals, verdicts and plots (scoreboard.md/json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scoreboard_clicks

from ranker import report, stats
from ranker.ablation import compare, mean_std
from ranker.models.metrics import TEST, VALIDATION


def _world_info(truths: list[dict]) -> dict:
    first = truths[0]
    info = {k: first.get(k) for k in ("world", "logging_quality", "click_model", "devices")}
    info["impressions"] = int(np.mean([t.get("impressions", 0) for t in truths]))
    info["clicks"] = int(np.mean([t.get("clicks", 0) for t in truths]))
    info["simulation_seeds"] = len(truths)
    if first.get("propensity"):
        info["propensity"] = first["propensity"]
    elif first.get("examination_rate"):
        info["examination_rate"] = first["examination_rate"]
    return info


def _best_tree(runs: dict, trees: tuple, fixed: bool) -> str | None:
    values = {t: stats.per_key_means(runs[t], VALIDATION, fixed) for t in trees if t in runs}
    return stats.select(values, list(values))


def _head_to_head(runs: dict, arm: str, other: str, fixed: bool) -> dict:
    values = {a: stats.per_key_means(runs[a], TEST, fixed) for a in (arm, other)}
    return stats.Paired(values).difference(arm, other)


def _choose_default(results: dict, fixed_lists: set, candidates: tuple) -> tuple[str, dict]:
    """The candidate with the best mean over worlds of its VALIDATION-half judged nDCG@10."""
    scores = {}
    for arm in candidates:
        per_world = [np.mean(list(stats.per_key_means(r["runs"][arm], VALIDATION, w in fixed_lists).values()))
                     for w, r in results.items() if arm in r["runs"]]
        scores[arm] = round(float(np.mean(per_world)), 4) if per_world else float("-inf")
    return max(scores, key=scores.get), scores


def build(results: dict, fixed_lists: set, candidates: tuple, trees: tuple, unbiased: str,
          sim_seeds: int, train_seeds: int) -> dict:
    default_arm, validation_scores = _choose_default(results, fixed_lists, candidates)
    worlds = {}
    for world, result in results.items():
        runs, fixed = result["runs"], world in fixed_lists
        entry = {"world": _world_info(result["truths"]),
                 **compare(runs, TEST, fixed, gap_reference=unbiased)}
        best = _best_tree(runs, trees, fixed)
        if best:
            entry["best_tree"] = {"arm": best, "chosen_on": VALIDATION,
                                  default_arm + "_vs_tree": _head_to_head(runs, default_arm, best, fixed)}
        entry["propensity_error_default"] = mean_std(
            [r.get("propensity_error") for r in runs.get(default_arm, [])])
        worlds[world] = entry
    return {"sim_seeds": sim_seeds, "train_seeds": train_seeds, "default_arm": default_arm,
            "default_chosen_on_validation": validation_scores, "half": TEST, "datasets": worlds}


def summary_table(board: dict) -> list[str]:
    default = board["default_arm"]
    lines = [f"| world | {default} (default) | best tree (chosen on validation) | {default} − tree "
             f"| {default} propensity error |", "|---|---|---|---|---|"]
    for world, r in board["datasets"].items():
        best = r.get("best_tree") or {}
        tree = best.get("arm")
        tree_ci = report.fmt_ci(r["arms"][tree]["judged_ndcg@10"]) if tree else "–"
        lines.append(f"| {world} | {report.fmt_ci(r['arms'][default]['judged_ndcg@10'])} "
                     f"| {tree or '–'} {tree_ci} | {report.fmt_diff(best.get(default + '_vs_tree'))} "
                     f"| {report.fmt_std(r.get('propensity_error_default'))} |")
    return lines


def markdown(board: dict, plots: list[str]) -> str:
    lines = ["# Scoreboard", "",
             f"Up to {board['sim_seeds']} simulation seeds per world, each with {board['train_seeds']} "
             "training seeds per neural arm and one per tree (trees have no randomness to vary); the "
             "`runs` column counts them. "
             "judged nDCG@10 on the TEST half of the judged lists (a stable hash of the request id "
             "splits them; the best tree configuration is chosen on the VALIDATION half), mean with a "
             "95% interval from a paired bootstrap over lists pooled across simulation seeds. A "
             "difference whose interval holds 0 is *no difference*. Gap recovered: share of the naive → "
             "unbiased-clicks gap, where that gap is itself beyond its interval. Click log-loss and "
             "propensity error (impression-weighted, read at the median item): mean ± std over runs.",
             "", "## Summary", "",
             f"Default two-tower variant, chosen on the validation half (mean judged nDCG@10 over "
             f"worlds): {board['default_arm']} ({board['default_chosen_on_validation']}).", ""]
    lines += summary_table(board)
    for world, result in board["datasets"].items():
        lines += ["", f"## {world}", "", report.describe_world(result["world"]),
                  f"({result['lists']} test lists, {result['world'].get('simulation_seeds')} "
                  "simulation seeds)", ""]
        lines += report.table(result)
        lines.append("")
        lines += [f"![{Path(p).name}]({Path(p).name})" for p in plots if Path(p).stem.endswith(world)]
    if board.get("ids"):
        lines += [""] + scoreboard_clicks.markdown(board["ids"])
    return "\n".join(lines) + "\n"


def write(board: dict, root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scoreboard.json").write_text(json.dumps(board, indent=2))
    plots = report.write_plots(board, str(root))
    md = root / "scoreboard.md"
    md.write_text(markdown(board, plots))
    return [str(md)] + plots
