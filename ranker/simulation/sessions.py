"""Sessions: who was shown what, on which device, when, and what they examined and clicked.

Sessions are drawn in blocks of about SESSIONS_PER_BLOCK ([sessions, positions] arrays), query by
query; every random draw comes from its own child stream (policy, device, time, clicks), so the
rankings, devices and times of a world do not depend on the click model or on `examine_all`.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from ranker.simulation import clicks as ck
from ranker.simulation import devices as dv
from ranker.simulation import worlds
from ranker.simulation.options import CLICK_NOISE, NUM_SHOWN

BASE_TIMESTAMP = 1_700_000_000  # 2023-11-14; sessions of a query spread over LOG_WINDOW_S
LOG_WINDOW_S = 30 * 24 * 3600
SESSIONS_PER_BLOCK = 20_000


@dataclasses.dataclass
class SessionBlock:
    """A block of sessions: per session its query, number within the query, device and time;
    per slot ([sessions, 10]) the shown item (global index into the QuerySet, -1 = empty slot)."""

    query: np.ndarray
    number: np.ndarray
    device: np.ndarray  # index into the device list
    timestamp: np.ndarray
    shown: np.ndarray
    valid: np.ndarray
    clicked: np.ndarray
    examined: np.ndarray


def simulate_sessions(qs: worlds.QuerySet, sessions_per_query: int, logging_quality: float,
                      click_model: str, devices: list[dv.Device], max_relevance: float,
                      rng: np.random.Generator, examine_all: bool = False,
                      trust_bias: float = 0.0) -> Iterator[SessionBlock]:
    """Sessions of every query (query-major), in blocks of about SESSIONS_PER_BLOCK sessions.

    `examine_all`: every shown item is examined and clicks are independent given attractiveness
    (no cascade stop, no trust bias): clicks free of every position effect.
    """
    policy_rng, device_rng, time_rng, click_rng = rng.spawn(4)
    p_device = np.array([d.share for d in devices])
    if examine_all:
        curves, noise, model = np.ones((len(devices), NUM_SHOWN)), CLICK_NOISE, ck.pbm_clicks
    else:
        curves, noise = dv.examination_matrix(devices), ck.position_noise(trust_bias)
        model = ck.pbm_clicks if click_model == "pbm" else ck.cascade_clicks
    base = qs.padded(ck.policy_scores(worlds.by_query_z(qs.latent, qs.offsets), qs.stale,
                                      logging_quality))
    lengths = qs.lengths
    gains = ck.gain(qs.relevance, max_relevance)
    queries_per_block = max(1, SESSIONS_PER_BLOCK // sessions_per_query)
    for first in range(0, qs.num_queries, queries_per_block):
        block_queries = np.arange(first, min(first + queries_per_block, qs.num_queries))
        query = np.repeat(block_queries, sessions_per_query)
        number = np.tile(np.arange(sessions_per_query), len(block_queries))
        local, valid = ck.rank_sessions(base, lengths, query, policy_rng)
        shown = np.where(valid, qs.offsets[query][:, None] + local, -1)
        device = device_rng.choice(len(devices), size=len(query), p=p_device)
        # Sessions of a query spread over the window in order of their number.
        slot = (number + time_rng.random(len(query))) / sessions_per_query
        timestamp = BASE_TIMESTAMP + (slot * LOG_WINDOW_S).astype(np.int64)
        k = shown.shape[1]
        attract = np.where(valid, ck.attractiveness(gains[np.maximum(shown, 0)],
                                                    np.broadcast_to(noise, (NUM_SHOWN,))[:k]), 0.0)
        clicked, examined = model(attract, curves[device][:, :k], valid, click_rng)
        yield SessionBlock(query, number, device, timestamp, shown, valid, clicked, examined)


class Tally:
    """Counts per device and position: impressions, examined and clicked."""

    def __init__(self, names: list[str]):
        self.names = names
        shape = (len(names), NUM_SHOWN)
        self.shown = np.zeros(shape, dtype=np.int64)
        self.examined = np.zeros(shape, dtype=np.int64)
        self.clicked = np.zeros(shape, dtype=np.int64)
        self.sessions = 0

    def add(self, block: SessionBlock) -> None:
        k = block.shown.shape[1]
        for d in range(len(self.names)):
            rows = block.device == d
            self.shown[d, :k] += block.valid[rows].sum(axis=0)
            self.examined[d, :k] += block.examined[rows].sum(axis=0)
            self.clicked[d, :k] += block.clicked[rows].sum(axis=0)
        self.sessions += len(block.query)

    @property
    def impressions(self) -> int:
        return int(self.shown.sum())

    @property
    def clicks(self) -> int:
        return int(self.clicked.sum())

    def ctr(self) -> dict[str, list]:
        return {d: _rates(self.clicked[i], self.shown[i]) for i, d in enumerate(self.names)}

    def examination_rate(self) -> dict[str, list]:
        """Empirical fraction of the shown impressions at each position that were examined."""
        return {d: _rates(self.examined[i], self.shown[i]) for i, d in enumerate(self.names)}


def _rates(num: np.ndarray, den: np.ndarray) -> list:
    return [None if n_den == 0 else float(n_num) / float(n_den) for n_num, n_den in zip(num, den)]
