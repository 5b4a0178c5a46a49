"""Do click metrics rank models the way judged nDCG does? IPS click nDCG against biased click nDCG.

    python benchmarks/ips_agreement.py --board scoreboard --worlds synthetic-w0.2,synthetic-w0.9 \
        [--arms naive,additive,pal,oracle] [--propensities truth] --output docs/ips_agreement

Reads the models a scoreboard run trained (OUT/worlds/<world>/seed<S>/runs/<arm>/seed<T>) and
evaluates each on its world's eval split (clicks) and judged lists. Judged lists are other queries'
full candidate lists; the click metrics re-rank the logged top lists, so the table also gives the
nDCG of those same logged lists by their true grades (the simulator writes them): what the click
metrics estimate. Per arm and metric: the mean
over lists with a 95% interval (paired bootstrap over (simulation seed, request id), each arm's
value per list averaged over training seeds). For every pair of arms that a reference (judged nDCG@10,
or the true nDCG@10 of the logged lists) separates beyond its interval, it asks whether each click
metric orders the pair the same way (agree), the other way beyond its own interval (contradict), or
cannot tell (undecided).
Writes OUT/ips_agreement.json and OUT/ips_agreement.md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ranker.models import evaluate  # noqa: E402
from ranker.stats import Paired, per_key_means  # noqa: E402

logger = logging.getLogger("ips_agreement")
METRICS = {"judged nDCG@10": ("judged_per_list", "ndcg@10"),
           "true nDCG@10 on the logged lists": ("clicks_per_list", "true_ndcg@10"),
           "IPS click nDCG@10": ("ips_per_list", "ndcg@10"),
           "click nDCG@10 (biased)": ("clicks_per_list", "ndcg@10")}
JUDGED, TRUE = "judged nDCG@10", "true nDCG@10 on the logged lists"
REFERENCES = (JUDGED, TRUE)
CLICK_METRICS = ("IPS click nDCG@10", "click nDCG@10 (biased)")


def per_key(board: Path, world: str, arm: str, propensities: str) -> dict[str, dict]:
    """{metric: {(sim seed, request id): mean over training seeds}} of one arm in one world."""
    runs = []
    for sim in sorted((board / "worlds" / world).glob("seed*")):
        for run in sorted((sim / "runs" / arm).glob("seed*")):
            with contextlib.redirect_stdout(io.StringIO()):
                result = evaluate.evaluate(str(sim / "data"), model_dir=str(run), propensities=propensities)
            runs.append({**result, "sim_seed": sim.name})
            logger.info("%s %s %s/%s: judged %.4f, ips %.4f", world, arm, sim.name, run.name,
                        result["judged"]["ndcg@10"], result["ips"]["ndcg@10"])
    return {m: per_key_means(runs, None, False, block=block, metric=key) for m, (block, key) in METRICS.items()}


def compare(values: dict[str, dict[str, dict]], arms: list[str]) -> dict:
    """Means with intervals per metric and arm, and the pairwise verdicts of every metric."""
    paired = {m: Paired({arm: values[arm][m] for arm in arms}) for m in METRICS}
    means = {m: {arm: paired[m].mean(arm) for arm in arms} for m in METRICS}
    pairs = []
    for a, b in itertools.combinations(arms, 2):
        row = {"pair": f"{a} vs {b}"}
        for m in METRICS:
            row[m] = paired[m].difference(a, b)
        for ref in REFERENCES:
            truth = row[ref]["verdict"]
            for m in CLICK_METRICS:
                if truth in ("better", "worse"):
                    v = row[m]["verdict"]
                    row[m][f"against {ref}"] = ("agree" if v == truth else "undecided" if v == "no difference"
                                                else "contradict")
        pairs.append(row)
    return {"means": means, "pairs": pairs}


def markdown(results: dict, propensities: str) -> str:
    lines = ["# Click metrics against judged nDCG", "",
             f"IPS propensities: `{propensities}`. Means over lists (95% bootstrap interval); pairs"
             " compared with a paired bootstrap. A pair counts for a reference only where that"
             " reference tells the arms apart beyond its interval.", ""]
    for world, result in results.items():
        arms = list(next(iter(result["means"].values())))
        lines += [f"## {world}", "", "| metric | " + " | ".join(arms) + " |",
                  "|---|" + "---|" * len(arms)]
        for m, by_arm in result["means"].items():
            cells = [f"{v['mean']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" for v in by_arm.values()]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "| pair | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for row in result["pairs"]:
            cells = [f"{row[m]['diff']:+.4f} {row[m]['verdict']}" for m in METRICS]
            lines.append(f"| {row['pair']} | " + " | ".join(cells) + " |")
        lines.append("")
        for m in CLICK_METRICS:
            for ref in REFERENCES:
                tally = [row[m][f"against {ref}"] for row in result["pairs"] if f"against {ref}" in row[m]]
                lines.append(f"- {m} against {ref}: of {len(tally)} pairs it separates, {tally.count('agree')}"
                             f" agree, {tally.count('contradict')} contradict, {tally.count('undecided')} undecided")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--board", required=True, help="a scoreboard run's --output folder")
    parser.add_argument("--worlds", default="synthetic-w0.2,synthetic-w0.9")
    parser.add_argument("--arms", default="naive,additive,pal,oracle")
    parser.add_argument("--propensities", default="truth", help="auto, truth, harvested, model or a JSON file")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    arms = args.arms.split(",")
    results = {}
    for world in args.worlds.split(","):
        values = {arm: per_key(Path(args.board), world, arm, args.propensities) for arm in arms}
        results[world] = compare(values, arms)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ips_agreement.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "ips_agreement.md").write_text(markdown(results, args.propensities))
    print((out / "ips_agreement.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
