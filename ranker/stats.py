"""Uncertainty for the scoreboard: paired bootstrap over judged lists, pooled across worlds.

A run gives nDCG@10 per judged list. Lists are keyed by a cluster key — (simulation seed, request id)
where every simulation seed draws its own world and queries, the request id alone where the lists
are fixed (a LETOR test file) — and each arm's value for a key is its mean over the training (and,
for fixed lists, simulation) seeds. Means, differences between arms and the share of the gap
recovered are all computed on the same bootstrap resamples of keys, so they are paired.
"""
from __future__ import annotations

import numpy as np

from ranker.models import metrics as metrics_lib

RESAMPLES = 2000
LEVEL = 0.95


def per_key_means(runs: list[dict], half: str | None, fixed_lists: bool, block: str = "judged_per_list",
                  metric: str = "ndcg@10") -> dict:
    """{key: mean of `metric`} over runs ([{"sim_seed", block: {"request_id", metric}}]) restricted
    to one judged half (None: all lists); values that are None (no figure for that list) are skipped."""
    sums: dict = {}
    for run in runs:
        lists = run.get(block) or {}
        for rid, value in zip(lists.get("request_id", []), lists.get(metric, [])):
            if value is None or (half and metrics_lib.judged_half(rid) != half):
                continue
            key = rid if fixed_lists else (run["sim_seed"], rid)
            total, count = sums.get(key, (0.0, 0))
            sums[key] = (total + value, count + 1)
    return {key: total / count for key, (total, count) in sums.items()}


class Paired:
    """Arms' per-key values on the keys all of them share, with shared bootstrap resamples."""

    def __init__(self, values: dict[str, dict], seed: int = 0, resamples: int = RESAMPLES):
        shared = set.intersection(*(set(v) for v in values.values())) if values else set()
        self.keys = sorted(shared, key=str)
        self.matrix = {arm: np.array([v[k] for k in self.keys]) for arm, v in values.items()}
        n = len(self.keys)
        rng = np.random.default_rng(seed)
        self.index = rng.integers(0, n, size=(resamples, n)) if n else np.zeros((0, 0), int)

    @property
    def n(self) -> int:
        return len(self.keys)

    def _interval(self, samples: np.ndarray) -> list[float]:
        tail = (1.0 - LEVEL) / 2 * 100
        return [round(float(np.nanpercentile(samples, tail)), 4),
                round(float(np.nanpercentile(samples, 100 - tail)), 4)]

    def mean(self, arm: str) -> dict:
        values = self.matrix[arm]
        if not self.n:
            return {"mean": None, "ci95": None, "n": 0}
        return {"mean": round(float(values.mean()), 4),
                "ci95": self._interval(values[self.index].mean(axis=1)), "n": self.n}

    def difference(self, arm: str, other: str) -> dict:
        """arm − other with its interval and a verdict: better / worse / no difference."""
        diff = self.matrix[arm] - self.matrix[other]
        if not self.n:
            return {"diff": None, "ci95": None, "verdict": "no data"}
        ci = self._interval(diff[self.index].mean(axis=1))
        verdict = "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "no difference"
        return {"diff": round(float(diff.mean()), 4), "ci95": ci, "verdict": verdict}

    def gap_recovered(self, arm: str, low: str, high: str) -> dict | None:
        """(arm − low) / (high − low): the share of the low → high gap that arm closes, with an
        interval from the same resamples; None when the gap itself is not beyond its interval."""
        gap = self.difference(high, low)
        if gap["verdict"] != "better":
            return None
        up = (self.matrix[arm] - self.matrix[low])[self.index].mean(axis=1)
        down = (self.matrix[high] - self.matrix[low])[self.index].mean(axis=1)
        share = np.divide(up, down, out=np.full_like(up, np.nan), where=down > 0)
        point = float((self.matrix[arm] - self.matrix[low]).mean()
                      / (self.matrix[high] - self.matrix[low]).mean())
        return {"share": round(point, 3), "ci95": [round(v, 3) for v in self._interval(share)]}


def select(values: dict[str, dict], candidates: list[str]) -> str | None:
    """The candidate with the highest mean on the given (validation) values."""
    scored = [(float(np.mean(list(values[c].values()))), c) for c in candidates if values.get(c)]
    return max(scored)[1] if scored else None
