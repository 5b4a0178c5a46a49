"""Per-list ranking metrics, the judged validation/test halves and the propensity error.

Per-list values are what the scoreboard's paired bootstrap resamples, so every arm (neural or tree)
computes them here, the same way: TF-Ranking's nDCG (gain 2^label − 1, log2 discount, padded slots
labelled < 0 ignored, a list without a relevant item counts 0), ties in the scores broken at random
with a fixed seed (a stable sort would hand tied items the logging policy's order).
"""
from __future__ import annotations

import hashlib

import numpy as np

NDCG_CUTOFFS = (1, 3, 5, 10)
VALIDATION, TEST = "validation", "test"
HALVES = (VALIDATION, TEST)


def ndcg_per_list(labels: np.ndarray, scores: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """nDCG@k of each row of `[lists, slots]` labels/scores; labels < 0 are padding."""
    labels = np.asarray(labels, dtype=np.float64)
    valid = labels >= 0
    gains = np.where(valid, np.exp2(np.maximum(labels, 0.0)) - 1.0, 0.0)
    dcg, ideal = dcg_per_list(gains, scores, valid, k, seed)
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def dcg_per_list(gains: np.ndarray, scores: np.ndarray, valid: np.ndarray, k: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(DCG@k of the `scores` order, DCG@k of the best order) of each row of `[lists, slots]`
    gains; slots not `valid` are ranked last; ties in the scores broken at random with `seed`."""
    scores = np.asarray(scores, dtype=np.float64)
    tie_break = np.random.default_rng(seed).random(gains.shape)
    order = np.lexsort((tie_break, -np.where(valid, scores, -np.inf)), axis=-1)
    top = min(k, gains.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    dcg = (np.take_along_axis(gains, order, axis=1)[:, :top] * discounts).sum(axis=1)
    ideal = (-np.sort(-gains, axis=1)[:, :top] * discounts).sum(axis=1)
    return dcg, ideal


def judged_half(request_id: str) -> str:
    """The stable validation/test half of a judged list: configurations are chosen on the
    validation half and reported on the test half."""
    digest = hashlib.md5(request_id.encode("utf-8")).digest()
    return HALVES[digest[0] & 1]


def propensity_error(learned: dict, truth: dict, impressions: dict | None = None) -> float | None:
    """Impression-weighted mean absolute error of the examination ratio over positions 2…n.

    `learned`/`truth`: {device: [1.0, p2, …]}; `impressions`: {device: {"2": count, …}} (stats.json's
    impressions_by_position_device) — without it every (device, position) weighs the same.
    """
    errors, weights = [], []
    for device, curve in learned.items():
        true_curve = truth.get(device)
        if not true_curve:
            continue
        counts = (impressions or {}).get(device, {})
        for position in range(2, min(len(curve), len(true_curve)) + 1):
            if true_curve[position - 1] is None or curve[position - 1] is None:
                continue  # unknown there (a harvested estimate without enough interventions)
            weight = float(counts.get(str(position), 0)) if impressions else 1.0
            errors.append(abs(curve[position - 1] - true_curve[position - 1]))
            weights.append(weight)
    if not errors or sum(weights) <= 0:
        return None
    return round(float(np.average(errors, weights=weights)), 5)
