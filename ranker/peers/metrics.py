"""Judged nDCG of a peer's scores, per list (numpy) and in aggregate (TF-Ranking's metric).

TF-Ranking's nDCG: gain 2^label − 1, discount 1 / log2(1 + rank), padded slots masked, a list
without a relevant item counts 0 and every list weighs the same. TF-Ranking breaks score ties at
random; trees tie often (candidates falling in the same leaves), so ties are broken here once, by
a seeded random key, and both the per-list values and the aggregate see the same strict order:
their mean and the aggregate then agree exactly.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ranker import tfr
from ranker.features import spec as fs
from ranker.models import metrics as models_metrics
from ranker.models.metrics import NDCG_CUTOFFS  # noqa: F401  (re-exported for the peers)


def strict_order(scores: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """`[lists, slots]` scores → distinct per-list scores (higher first), ties broken at random;
    padded slots get the lowest."""
    key = np.random.default_rng(seed).random(scores.shape)
    order = np.lexsort((key, -np.where(mask, scores, -np.inf)), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return -ranks.astype(np.float64)


def ndcg_per_list(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k of each list (scores already strict: see `strict_order`): the evaluator's definition."""
    return models_metrics.ndcg_per_list(np.where(mask, labels, fs.PADDING_LABEL), scores, k)


def tfr_ndcg(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray, k: int) -> float:
    """TF-Ranking's aggregate nDCG@k (padded slots get the padding label)."""
    metric = tfr.ndcg(k)
    metric.update_state(tf.constant(np.where(mask, labels, fs.PADDING_LABEL), tf.float32),
                        tf.constant(scores, tf.float32))
    return float(metric.result())


def judged_metrics(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray,
                   seed: int) -> tuple[dict, np.ndarray]:
    """(`{"ndcg@1": …, "ndcg@10": …, "lists": N}` by TF-Ranking, per-list nDCG@10 by numpy)."""
    strict = strict_order(scores, mask, seed)
    out = {f"ndcg@{k}": round(tfr_ndcg(labels, strict, mask, k), 5) for k in NDCG_CUTOFFS}
    out["lists"] = int(mask.any(axis=1).sum())
    return out, ndcg_per_list(labels, strict, mask, 10)


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve over all impressions (ties count one half); None with one class."""
    positives = labels > 0
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mid_ranks = first + (counts + 1) / 2.0  # average 1-based rank of each tie group
    ranks[order] = np.repeat(mid_ranks, counts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
