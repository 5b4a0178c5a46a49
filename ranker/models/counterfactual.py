"""Counterfactual click metrics: how well a new ranking would do on the logged lists, from clicks.

Clicks on a logged list are biased by where the old ranker put each item: an item clicked at
position 5 was likely examined with probability p(5, device) < 1. Inverse propensity scoring
(Joachims et al. 2017; Agarwal et al. 2019) weighs each click by w = min(1 / p(k, d), clip), which
makes a weighted click an unbiased estimate of "relevant" under the position-based model. The model
under evaluation re-ranks each logged list; with gains w on the clicked items:

    ips dcg@k      Σ_clicked w / log2(1 + rank)  over ranks ≤ k, mean over lists
    ips ndcg@k     that DCG over the DCG of the best order of the same gains, mean over lists with a click
    self-normalised dcg@k   Σ w / log2(1 + rank) / Σ w over every click of the split: the weighted
                   average discount of a clicked item (a ratio estimate, insensitive to the weights' scale)

Ties in the model's scores are broken at random with a fixed seed (metrics.ndcg_per_list's rule).
The propensities come from truth.json (simulated logs), the data's model-free intervention-harvesting
estimate, the bias tower of the model itself, or a JSON file {device: [p1, p2, …]}.
"""
from __future__ import annotations

import os

import numpy as np

from ranker.artifacts import HARVESTED_FILE, TRUTH_FILE, read_json
from ranker.errors import RankerError
from ranker.models import metrics as metrics_lib
from ranker.stats import LEVEL, RESAMPLES, Paired

DEFAULT_CLIP = 20.0  # largest weight: a click at a position examined 5% of the time or less
CUTOFF = 10
AUTO, TRUTH, HARVESTED, MODEL = "auto", "truth", "harvested", "model"
SOURCES = (AUTO, TRUTH, HARVESTED, MODEL)  # or a JSON file's path


def _filled(curve: list) -> tuple[list[float], int]:
    """A harvested curve with its unknown positions (null) set to the last known value before them."""
    out, filled, last = [], 0, 1.0
    for value in curve:
        if value is None:
            filled += 1
        else:
            last = float(value)
        out.append(last)
    return out, filled


def _checked(raw, where: str) -> dict[str, list[float]]:
    if not isinstance(raw, dict) or not raw:
        raise RankerError(f"{where}: propensities must be a JSON object {{device: [p1, p2, …]}}")
    curves = {}
    for device, curve in raw.items():
        if not isinstance(curve, list) or not curve or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in curve):
            raise RankerError(f"{where}: the curve of {device!r} must be a list of positive numbers")
        curves[str(device)] = [float(v) / float(curve[0]) for v in curve]
    return curves


def _harvested(data_dir: str) -> tuple[dict | None, int]:
    harvested = read_json(os.path.join(data_dir, HARVESTED_FILE))
    curves = (harvested or {}).get("propensity") or {}
    usable, filled = {}, 0
    for device, curve in curves.items():
        if curve and any(v is not None for v in curve[1:]):
            usable[device], n = _filled(curve)
            filled += n
    return usable or None, filled


def propensities(data_dir: str, source: str = AUTO, model_curve: dict | None = None) -> dict:
    """{"curves": {device: [1.0, p2, …]}, "source": name or path, "filled_positions": n}.

    auto: truth.json's curve where the logs are simulated, else the harvested estimate, else the
    model's own bias tower (`model_curve`); RankerError when the chosen source has none."""
    truth = (read_json(os.path.join(data_dir, TRUTH_FILE)) or {}).get("propensity")
    candidates = {TRUTH: lambda: (truth, 0), HARVESTED: lambda: _harvested(data_dir),
                  MODEL: lambda: (model_curve or None, 0)}
    if source not in SOURCES:
        raw = read_json(source)
        if raw is None:
            raise RankerError(f"--propensities {source}: no such file")
        return {"curves": _checked(raw, source), "source": source, "filled_positions": 0}
    order = [TRUTH, HARVESTED, MODEL] if source == AUTO else [source]
    for name in order:
        curves, filled = candidates[name]()
        if curves:
            return {"curves": _checked(curves, name), "source": name, "filled_positions": filled}
    raise RankerError(f"{data_dir}: no position propensities from {' / '.join(order)}"
                      f" (truth.json, {HARVESTED_FILE} written by preprocess, or a model's bias tower);"
                      " give --propensities FILE")


def weights(positions: np.ndarray, devices: np.ndarray, curves: dict, clip: float) -> np.ndarray:
    """min(1 / p(k, d), clip) per slot of `[lists, slots]` positions (≥ 1; past a curve: its last
    value); a device without a curve gets the mean curve of the others."""
    if not curves:  # unit weights: the biased click metric
        return np.ones(positions.shape, np.float64)
    length = max(int(positions.max(initial=1)), 1)
    names = list(curves)
    table = np.array([[c[min(k, len(c)) - 1] for k in range(1, length + 1)] for c in curves.values()])
    table = np.vstack([table, table.mean(axis=0)])  # last row: devices without a curve
    index = {name: i for i, name in enumerate(names)}
    rows = np.array([index.get(d, len(names)) for d in devices], np.int64)
    columns = np.clip(positions, 1, length) - 1
    return np.minimum(1.0 / table[rows[:, None], columns], clip)


def per_list(clicks: np.ndarray, scores: np.ndarray, positions: np.ndarray, devices: np.ndarray,
             curves: dict, clip: float, k: int = CUTOFF, seed: int = 0) -> dict:
    """Per-list IPS figures of `[lists, slots]` clicks (< 0: padding), model scores and logged
    positions: {"dcg", "ideal" (the DCG of the gains' best order), "weighted" (Σ w), "clicks",
    "clipped"}."""
    clicked = clicks > 0
    w = weights(positions, devices, curves, clip)
    gains = np.where(clicked, w, 0.0)
    dcg, ideal = metrics_lib.dcg_per_list(gains, scores, clicks >= 0, k, seed)
    return {"dcg": dcg, "ideal": ideal, "weighted": gains.sum(axis=1), "clicks": clicked.sum(axis=1),
            "clipped": (clicked & (w >= clip)).sum(axis=1)}


def contributions(rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lists with a click, each one's DCG over the mean ideal DCG of those lists): their mean is
    the nDCG, Σ DCG / Σ ideal DCG, and paired differences of them are differences of it."""
    clicked = rows["ideal"] > 0
    if not clicked.any():
        raise RankerError("the click split has no clicked list: no click nDCG")
    return clicked, rows["dcg"][clicked] / rows["ideal"][clicked].mean()


def summarise(request_ids: list[str], devices: list[str], rows: dict, source: dict, clip: float) -> dict:
    """metrics.json's "ips" block (ndcg@10 with a bootstrap interval over lists, dcg@10,
    self-normalised dcg@10, the clip and the share of clicks it clipped), per device, and per list."""
    clicked, values = contributions(rows)
    ids, kinds = np.asarray(request_ids)[clicked], np.asarray(devices)[clicked]
    dcg, ideal = rows["dcg"][clicked], rows["ideal"][clicked]
    clicks = int(rows["clicks"].sum())
    block = {**_ratio_ci(dcg, ideal),
             f"dcg@{CUTOFF}": round(float(rows["dcg"].mean()), 5),
             f"self_normalised_dcg@{CUTOFF}": round(float(rows["dcg"].sum() / rows["weighted"].sum()), 5),
             "propensity_source": source["source"], "filled_positions": source["filled_positions"],
             "clip": clip, "clipped_clicks": round(float(rows["clipped"].sum()) / clicks, 5), "clicks": clicks}
    by_device = {device: _ratio_ci(dcg[kinds == device], ideal[kinds == device])
                 for device in sorted(set(kinds.tolist()))}
    return {"ips": block, "ips_by_device": by_device,
            "ips_per_list": {"request_id": ids.tolist(), f"ndcg@{CUTOFF}": values.round(6).tolist()}}


def _ratio_ci(dcg: np.ndarray, ideal: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Σ dcg / Σ ideal with a percentile bootstrap interval over lists."""
    index = np.random.default_rng(seed).integers(0, len(dcg), size=(resamples, len(dcg)))
    ratios = dcg[index].sum(axis=1) / np.maximum(ideal[index].sum(axis=1), 1e-12)
    tail = (1 - LEVEL) / 2 * 100
    return {f"ndcg@{CUTOFF}": round(float(dcg.sum() / ideal.sum()), 5),
            "ci95": [round(float(np.percentile(ratios, tail)), 4), round(float(np.percentile(ratios, 100 - tail)), 4)],
            "lists": int(len(dcg))}


def paired_difference(candidate: dict, baseline: dict, metric: str) -> dict:
    """candidate − baseline of per-list values ({"request_id": [...], metric: [...]}, None: no value)
    on the lists both have, with a paired bootstrap interval and a verdict (better / worse / no
    difference)."""
    arms = {name: {rid: v for rid, v in zip(lists["request_id"], lists[metric]) if v is not None}
            for name, lists in (("candidate", candidate), ("baseline", baseline))}
    paired = Paired(arms)
    return {**paired.difference("candidate", "baseline"), "lists": paired.n}

