"""Who sees what and who clicks: logging policy, trust-biased click noise, PBM and cascade click models.

Examination curves per device live in devices.py.

Everything works on whole blocks of sessions at once ([sessions, positions] arrays); the cascade
loops over the (at most 10) positions only, never over sessions.
"""
from __future__ import annotations

import numpy as np

from ranker.simulation.options import CLICK_NOISE, NUM_SHOWN

POLICY_JITTER = 0.15  # σ of the per-session score noise, so items move between positions


def gain(relevance: np.ndarray, max_relevance: float) -> np.ndarray:
    """(2^r − 1)/(2^max − 1): the usual graded gain, 0 for an irrelevant item, 1 for the best."""
    return (np.exp2(relevance) - 1.0) / (2.0 ** max(max_relevance, 1.0) - 1.0)


def position_noise(trust_bias: float, num_positions: int = NUM_SHOWN,
                   noise: float = CLICK_NOISE) -> np.ndarray:
    """ε_k = ε·(1 + T/k) for k = 1..num_positions (options.TRUST_BIAS_FORM); ε everywhere at T = 0.

    Trust bias (Agarwal et al. 2019): users trust the top of the list, so examined irrelevant
    items are clicked more often there: ε(1+T) at position 1, falling towards ε further down.
    """
    return noise * (1.0 + trust_bias / np.arange(1, num_positions + 1))


def attractiveness(gains: np.ndarray, noise: np.ndarray | float = CLICK_NOISE) -> np.ndarray:
    """p(click | seen, r, k) = ε_k + (1−ε_k)·gain(r); `noise` broadcasts over the last (position) axis."""
    return noise + (1.0 - noise) * gains


def policy_scores(latent_z: np.ndarray, stale_z: np.ndarray, quality: float) -> np.ndarray:
    """Noise-free logging score W·z(relevance) + (1−W)·z(stale error) (both z-scored per query).

    The stale error is fixed per item, so at W<1 the same items are pushed up session after session
    (feature-correlated confounding a debiased model must undo); errors redrawn per session would
    average out and leave nothing to debias.
    """
    return quality * latent_z + (1.0 - quality) * stale_z


def rank_sessions(base: np.ndarray, lengths: np.ndarray, session_query: np.ndarray,
                  rng: np.random.Generator, jitter: float = POLICY_JITTER,
                  top_k: int = NUM_SHOWN) -> tuple[np.ndarray, np.ndarray]:
    """Per session the local indices of the shown candidates, best first, and a validity mask.

    base: [queries, max_len] padded policy scores; lengths: candidates per query. Each session adds
    N(0, jitter²) to its query's scores and shows the top `top_k` ([sessions, top_k], -1 padded).
    """
    max_len = base.shape[1]
    scores = base[session_query] + jitter * rng.standard_normal((len(session_query), max_len))
    scores[np.arange(max_len)[None, :] >= lengths[session_query][:, None]] = -np.inf
    k = min(top_k, max_len)
    if k < max_len:
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        shown = np.take_along_axis(top, order, axis=1)
    else:
        shown = np.argsort(-scores, axis=1, kind="stable")
    valid = np.arange(k)[None, :] < np.minimum(lengths[session_query], k)[:, None]
    return np.where(valid, shown, -1), valid


def pbm_clicks(attract: np.ndarray, examination: np.ndarray, valid: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Position-based model: click = seen ∧ attracted, independently per slot. Returns (clicks, seen)."""
    seen = (rng.random(attract.shape) < examination) & valid
    clicks = seen & (rng.random(attract.shape) < attract)
    return clicks, seen


def cascade_clicks(attract: np.ndarray, examination: np.ndarray, valid: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cascade: scan from the top; click with the item's attractiveness and stop after a click,
    else go on to slot k+1 with p(seen|k+1)/p(seen|k) of the session's device curve.

    `examination` is that curve per session ([sessions, positions]). Returns (clicks, examined).
    """
    n, k = attract.shape
    u_click = rng.random((n, k))
    u_next = rng.random((n, k))
    clicks = np.zeros((n, k), dtype=bool)
    examined = np.zeros((n, k), dtype=bool)
    active = valid[:, 0] & (u_next[:, 0] < examination[:, 0])
    for pos in range(k):
        examined[:, pos] = active
        clicks[:, pos] = active & (u_click[:, pos] < attract[:, pos])
        if pos + 1 < k:
            go_on = u_next[:, pos + 1] < examination[:, pos + 1] / examination[:, pos]
            active = active & ~clicks[:, pos] & go_on & valid[:, pos + 1]
    return clicks, examined
