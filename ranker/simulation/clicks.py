"""Who sees what and who clicks: logging policy, examination curves, PBM and cascade click models.

Everything works on whole blocks of sessions at once ([sessions, positions] arrays); the cascade
loops over the (at most 10) positions only, never over sessions.
"""
from __future__ import annotations

import re

import numpy as np

from ranker.errors import RankerError

NUM_SHOWN = 10  # slots of a served list
CLICK_NOISE = 0.05  # ε: p(click | seen) of an irrelevant item
POLICY_JITTER = 0.15  # σ of the per-session score noise, so items move between positions
# Examination p(seen | pos, device) = (1/pos)^η. Devices not listed here get UNKNOWN_ETA.
DEVICE_ETA = {"desktop": 0.5, "tablet": 1.0, "mobile": 1.5}
UNKNOWN_ETA = 1.0
DEVICE_SHARE = {"desktop": 0.5, "mobile": 0.35, "tablet": 0.15}
JUDGED_DEVICE = "unknown"  # device_type of judged lists; not a simulated device
CLICK_MODELS = ("pbm", "cascade")
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_devices(devices) -> list[str]:
    """Validated device names; any well-formed name is allowed (unknown ones get η=1)."""
    devices = list(devices or [])
    if not devices:
        raise RankerError("--devices: give at least one device, e.g. desktop,mobile,tablet")
    for name in devices:
        if not isinstance(name, str) or not _DEVICE_NAME.match(name):
            raise RankerError(f"--devices: {name!r} is not a device name (letters, digits, _ . -)")
        if name == JUDGED_DEVICE:
            raise RankerError(f"--devices: '{JUDGED_DEVICE}' is reserved for judged lists")
    if len(set(devices)) != len(devices):
        raise RankerError(f"--devices: duplicate device in {','.join(devices)}")
    return devices


def device_eta(device: str) -> float:
    return DEVICE_ETA.get(device, UNKNOWN_ETA)


def examination_curve(device: str, num_positions: int = NUM_SHOWN) -> np.ndarray:
    """p(seen | pos, device) for pos 1..num_positions: 1 at the top, steeper on small screens."""
    return (1.0 / np.arange(1, num_positions + 1)) ** device_eta(device)


def device_shares(devices: list[str]) -> dict[str, float]:
    """Traffic share of each device: the defaults renormalised over the devices given.

    An unknown device gets the weight 1/len(devices) before renormalising (all-unknown → equal).
    """
    weights = np.array([DEVICE_SHARE.get(d, 1.0 / len(devices)) for d in devices])
    weights = weights / weights.sum()
    return {d: float(w) for d, w in zip(devices, weights)}


def attractiveness(relevance: np.ndarray, max_relevance: float, noise: float = CLICK_NOISE) -> np.ndarray:
    """p(click | seen, r) = ε + (1−ε)(2^r − 1)/(2^max − 1): the usual graded-gain click curve."""
    gain = (np.exp2(relevance) - 1.0) / (2.0 ** max(max_relevance, 1.0) - 1.0)
    return noise + (1.0 - noise) * gain


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
