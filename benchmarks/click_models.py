"""Classic click models (Chuklin, Markov & de Rijke, "Click Models for Web Search", 2015) in numpy:
the baselines a debiased two-tower model has to beat on held-out click log-loss.

    python benchmarks/click_models.py --data PREPROCESS_DIR [--iterations 50]

Fitted on the train split's clicked lists, scored on every impression of the eval split (mean
click log-loss). A query is the context feature `query_id` when the records carry it, else the
joined values of every declared context feature; a document is the shown `item_id`.

- ctr-position: p(click) = CTR of the position.
- ctr-document: p(click) = CTR of the (query, document) pair.
- pbm: p(click) = α(query, doc) · γ(position, device), fitted by EM.
- ubm: p(click) = α(query, doc) · γ(position, distance to the previous click of the session),
  fitted by EM; held-out predictions condition on the session's earlier clicks, as UBM's
  log-likelihood always does.
Per-pair estimates are shrunk toward the overall mean with PRIOR_STRENGTH pseudo-impressions;
pairs (and γ cells) never seen in training fall back to that mean (γ: the position's mean).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)

MODELS = ("ctr-position", "ctr-document", "pbm", "ubm")
PRIOR_STRENGTH = 1.0  # pseudo-impressions at the overall mean for every per-pair estimate
EPS = 1e-6  # predictions are clipped to [EPS, 1 − EPS] for the log-loss


@dataclasses.dataclass
class Sessions:
    """Impressions, sessions contiguous and each in displayed order."""

    query: np.ndarray  # str
    doc: np.ndarray  # str
    position: np.ndarray  # int, 1 = top
    device: np.ndarray  # str
    clicked: np.ndarray  # int 0/1
    session: np.ndarray  # int, one value per served list

    @property
    def previous_click(self) -> np.ndarray:
        """Position of the latest click above each impression in its session (0: none)."""
        if np.any(np.diff(self.session) < 0):
            raise ValueError("sessions must be contiguous and numbered in increasing order")
        offset = self.session.astype(np.int64) * (int(self.position.max(initial=0)) + 1)
        running = np.maximum.accumulate(offset + np.where(self.clicked > 0, self.position, 0))
        out = np.zeros(len(self.position), dtype=np.int64)
        same = self.session[1:] == self.session[:-1]  # the row above is in the same session
        out[1:] = np.where(same, running[:-1] - offset[1:], 0)
        return out


def _codes(train_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of train keys, and of `keys` (−1 where never seen in training)."""
    uniq, train_codes = np.unique(train_keys, return_inverse=True)
    at = np.clip(np.searchsorted(uniq, keys), 0, max(len(uniq) - 1, 0))
    codes = np.where(uniq[at] == keys, at, -1) if len(uniq) else np.full(len(keys), -1)
    return train_codes, codes, len(uniq)


def _shrunk_rate(codes, hits, size: int, mean: float) -> np.ndarray:
    counts = np.bincount(codes, minlength=size)
    return (np.bincount(codes, weights=hits, minlength=size) + PRIOR_STRENGTH * mean) / (
        counts + PRIOR_STRENGTH)


def _lookup(table: np.ndarray, codes: np.ndarray, fallback) -> np.ndarray:
    return np.where(codes >= 0, table[np.maximum(codes, 0)], fallback)


def _ctr(train_keys, clicked, keys) -> np.ndarray:
    train_codes, codes, size = _codes(train_keys, keys)
    mean = float(clicked.mean())
    return _lookup(_shrunk_rate(train_codes, clicked, size, mean), codes, mean)


def _em(pair: np.ndarray, cell: np.ndarray, clicked: np.ndarray, sizes: tuple[int, int],
        iterations: int) -> tuple[np.ndarray, np.ndarray, float]:
    """EM for p(click) = α[pair] · γ[cell] (PBM and UBM alike): (α, γ, mean α)."""
    alpha, gamma = np.full(sizes[0], 0.5), np.full(sizes[1], 0.5)
    clicked = clicked.astype(bool)
    cell_counts = np.maximum(np.bincount(cell, minlength=sizes[1]), 1)
    mean_alpha = 0.5
    for _ in range(iterations):
        a, g = alpha[pair], gamma[cell]
        miss = 1.0 - a * g
        attracted = np.where(clicked, 1.0, a * (1.0 - g) / miss)
        examined = np.where(clicked, 1.0, g * (1.0 - a) / miss)
        mean_alpha = float(attracted.mean())
        alpha = _shrunk_rate(pair, attracted, sizes[0], mean_alpha)
        gamma = np.bincount(cell, weights=examined, minlength=sizes[1]) / cell_counts
    return alpha, gamma, mean_alpha


def _cell_fallback(train_cell_pos, gamma_cells, train_cells, positions) -> np.ndarray:
    """γ for cells unseen in training: the impression-weighted mean γ of the same position."""
    per_position = np.bincount(train_cell_pos, weights=gamma_cells[train_cells])
    counts = np.bincount(train_cell_pos)
    mean = per_position.sum() / max(counts.sum(), 1)
    known = positions < len(counts)
    safe = np.where(known, positions, 0)
    return np.where(known & (counts[safe] > 0), per_position[safe] / np.maximum(counts[safe], 1),
                    mean)


def _factored(train: Sessions, test: Sessions, second: Callable[[Sessions], np.ndarray],
              iterations: int) -> np.ndarray:
    """α per (query, doc) × γ per (position, second(sessions)), fitted on train, on test."""
    pair_train, pair_test, n_pairs = _codes(_pair(train), _pair(test))
    cell_keys = [np.char.add(s.position.astype(str), np.char.add("|", second(s).astype(str)))
                 for s in (train, test)]
    cell_train, cell_test, n_cells = _codes(*cell_keys)
    alpha, gamma, mean_alpha = _em(pair_train, cell_train, train.clicked, (n_pairs, n_cells),
                                   iterations)
    g_fallback = _cell_fallback(train.position, gamma, cell_train, test.position)
    return _lookup(alpha, pair_test, mean_alpha) * _lookup(gamma, cell_test, g_fallback)


def _pair(s: Sessions) -> np.ndarray:
    return np.char.add(s.query.astype(str), np.char.add("\t", s.doc.astype(str)))


def predict(model: str, train: Sessions, test: Sessions, iterations: int = 50) -> np.ndarray:
    """p(click) of every test impression under `model` fitted on `train`."""
    if model == "ctr-position":
        return _ctr(train.position, train.clicked, test.position)
    if model == "ctr-document":
        return _ctr(_pair(train), train.clicked, _pair(test))
    if model == "pbm":
        return _factored(train, test, lambda s: s.device, iterations)
    if model == "ubm":
        return _factored(train, test, lambda s: s.position - s.previous_click, iterations)
    raise ValueError(f"unknown click model {model!r}; choose one of {', '.join(MODELS)}")


def log_loss(clicked: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1.0 - EPS)
    return float(-np.mean(np.where(clicked > 0, np.log(p), np.log(1.0 - p))))


@functools.lru_cache(maxsize=4)  # the CLI scores four models on the same splits
def load_sessions(data_dir: str, split: str) -> tuple[Sessions, list[str]]:
    """A split's clicked lists as Sessions, and the context features that name a query."""
    from ranker.models import data
    from ranker.peers import records

    spec = data.data_spec(data_dir)
    query_features = records.query_key_source(spec, data_dir)
    cols: dict[str, list] = {k: [] for k in ("query", "doc", "position", "device", "clicked",
                                              "session")}
    for i, raw in enumerate(records.raw_lists(data_dir, split, query_features)):
        shown = raw.clicked >= 0
        n = int(shown.sum())
        cols["query"].append(np.repeat(raw.query, n))
        cols["doc"].append(np.asarray(raw.item_ids)[shown])
        cols["position"].append(raw.positions[shown])
        cols["device"].append(np.repeat(raw.device, n))
        cols["clicked"].append(raw.clicked[shown])
        cols["session"].append(np.full(n, i))
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    return Sessions(**arrays), query_features


def fit_and_score(model: str, data_dir: str, iterations: int = 50) -> dict:
    """Held-out click log-loss of `model` over every impression of data_dir's eval split."""
    from ranker.errors import RankerError

    if model not in MODELS:
        raise RankerError(f"unknown click model {model!r}; choose one of {', '.join(MODELS)}")
    train, query_features = load_sessions(data_dir, "train")
    test, _ = load_sessions(data_dir, "eval")
    if not len(train.clicked) or not len(test.clicked):
        raise RankerError(f"{data_dir}: click models need clicked lists in train and eval")
    p = predict(model, train, test, iterations)
    return {"log_loss": round(log_loss(test.clicked, p), 5), "impressions": int(len(p)),
            "query_key": "+".join(query_features) or "(none)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", required=True, help="a `ranker preprocess` output folder")
    parser.add_argument("--iterations", type=int, default=50, help="EM iterations (pbm, ubm)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ranker.errors import RankerError

    try:
        results = {m: fit_and_score(m, args.data, args.iterations) for m in args.models.split(",")}
    except RankerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{'model':<14}{'log-loss':>10}{'impressions':>13}")
    for name, r in results.items():
        print(f"{name:<14}{r['log_loss']:>10.4f}{r['impressions']:>13}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
