"""Intervention harvesting (Agarwal et al., WSDM 2019; Fang et al. 2019): position propensities
from the click logs alone, without a model. Pure Python and NumPy (no Beam), so the Beam step
(harvest.py), evaluate and the tests share one implementation.

An *intervention unit* is (query key, item_id, device_type), the query key being the request's
whole `context` object. The old ranker showed the same item for the same query at several
positions; relevance is the same at every one of them, so under a position-based click model
E[ctr_k(unit)] = p_k · r(unit) and, summed with equal weight per unit over the units seen at
both k and k', B/A = Σ ctr_k' / Σ ctr_k estimates p_k' / p_k. log p is fitted per device over
every pair at once by the pairs' conditional likelihood (fit_log_propensity), log p_1 = 0. Not
least squares on log(B/A): a pair whose deeper position has few clicks gives a log ratio biased
low (E log X < log E X), pairs with a zero side must be dropped, and the bias adds up along the
chains of neighbouring pairs a good logging ranker produces (measured on 200k-impression
simulated logs, 3 seeds x 3 devices at W = 0.9: mean log error -0.16 for least squares against
-0.14 here; MAE 0.029 against 0.025 over those and W = 0.2).

Uncertainty: Poisson bootstrap over units. Each unit carries `replicates` Poisson(1) weights drawn
from a generator seeded by a hash of its key (the same on every runner and worker), so replicate
sums are accumulated alongside the point sums in one pass and merge like any other sum.
"""
from __future__ import annotations

import collections
import hashlib
import json
import threading

import numpy as np


DEFAULT_REPLICATES = 200
DEFAULT_MIN_INTERVENTIONS = 20
METHOD = ("intervention harvesting, conditional maximum likelihood over position pairs "
          "(Agarwal et al. 2019)")
_CI = (2.5, 97.5)
_MIN_DEFINED = 0.5  # a position needs an estimate in at least half the replicates to get an interval


def query_key(context) -> str:
    """The canonical JSON of a request's context (sorted keys): one query of the log."""
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def add_cell(cells: dict[int, tuple[int, int]], position: int, shown: int, clicks: int) -> None:
    """Adds (shown, clicks) at `position` to one unit's {position: (shown, clicks)}."""
    cell = cells.get(position)
    cells[position] = (shown, clicks) if cell is None else (cell[0] + shown, cell[1] + clicks)


def unit_seed(query: str, item_id: str, device: str) -> int:
    """A stable 128-bit hash of a unit's key (md5: the same in every process and Python)."""
    text = "\x1f".join((query, item_id, device)).encode("utf-8")
    return int.from_bytes(hashlib.md5(text).digest(), "big")


_LOCAL = threading.local()  # one generator per thread: runners may run bundles in threads


def unit_weights(seed: int, replicates: int) -> np.ndarray:
    """[1, w_1 … w_replicates]: the point estimate's weight, then Poisson(1) bootstrap weights
    drawn from a PCG64 whose state is `seed` (setting the state is 4x cheaper than seeding)."""
    generator = getattr(_LOCAL, "generator", None)
    if generator is None:
        generator = _LOCAL.generator = np.random.Generator(np.random.PCG64(0))
    generator.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": seed, "inc": 1},
                                     "has_uint32": 0, "uinteger": 0}
    weights = np.empty(replicates + 1)
    weights[0] = 1.0
    weights[1:] = generator.poisson(1.0, replicates)
    return weights


FIXED_POINT = 2**32  # A and B are integers in units of 2^-32 (CTRs rounded to that): sums exact,
# so the result does not depend on the order units are added and merged in (runners differ)


class DeviceSums:
    """One device's sums: per position pair (k, k') an int64 array [A, B, n] x (1 + replicates),
    A and B in units of 1/FIXED_POINT (pair_sums gives floats), units per position (pairs touching
    it), intervention units, impressions, largest position."""

    def __init__(self, replicates: int):
        self.replicates = replicates
        self.pairs: dict[tuple[int, int], np.ndarray] = {}
        self.touching: dict[int, int] = {}
        self.units = 0
        self.impressions = 0
        self.max_position = 0

    def add_unit(self, seed: int, counts: dict[int, tuple[int, int]]) -> None:
        """One unit: {position: (shown, clicks)}; pairs only when it has ≥ 2 positions."""
        self.impressions += sum(shown for shown, _ in counts.values())
        self.max_position = max(self.max_position, max(counts, default=0))
        if len(counts) < 2:
            return
        weights = unit_weights(seed, self.replicates).astype(np.int64)
        positions = sorted(counts)
        ctrs = [round(counts[k][1] / counts[k][0] * FIXED_POINT) for k in positions]
        weighted = np.outer(np.array(ctrs, dtype=np.int64), weights)  # ctr × weight, once
        self.units += 1
        for i, k in enumerate(positions):
            self.touching[k] = self.touching.get(k, 0) + 1
            for j in range(i + 1, len(positions)):
                pair = (k, positions[j])
                sums = self.pairs.get(pair)
                if sums is None:
                    sums = self.pairs[pair] = np.zeros((3, len(weights)), dtype=np.int64)
                sums[0] += weighted[i]
                sums[1] += weighted[j]
                sums[2] += weights

    def pair_sums(self, replicate: int) -> dict[tuple[int, int], tuple[float, float, float]]:
        """{(k, k'): (A, B, n)} of one replicate (0: the point estimate), as fit_log_propensity
        takes them, in pair order (the fit's float sums then follow no runner's order)."""
        return {pair: (s[0, replicate] / FIXED_POINT, s[1, replicate] / FIXED_POINT,
                       float(s[2, replicate])) for pair, s in sorted(self.pairs.items())}

    def merge(self, other: "DeviceSums") -> None:
        for pair, sums in other.pairs.items():
            if pair in self.pairs:
                self.pairs[pair] += sums
            else:
                self.pairs[pair] = sums.copy()
        for k, count in other.touching.items():
            self.touching[k] = self.touching.get(k, 0) + count
        self.units += other.units
        self.impressions += other.impressions
        self.max_position = max(self.max_position, other.max_position)


def fit_log_propensity(pairs: dict[tuple[int, int], tuple[float, float, float]],
                       n_positions: int) -> np.ndarray:
    """log p_k for k = 1..n_positions (index k-1), log p_1 = 0, maximising the pairs' conditional
    likelihood Σ A log(p_k / (p_k + p_k')) + B log(p_k' / (p_k + p_k')) (Newton's method; a
    Bradley–Terry model: given A + B, the share B of a pair is p_k' / (p_k + p_k') whatever the
    units' relevance). NaN where a position is not connected to position 1 through pairs with
    clicks, or has no click on its side of any pair (its maximum would be p = 0)."""
    rows = _usable_pairs(pairs, n_positions)
    connected = _connected_to_first(rows)
    out = np.full(n_positions, np.nan)
    out[0] = 0.0
    rows = [row for row in rows if row[0] in connected]
    free = np.array(sorted(connected - {1}), dtype=int) - 1
    if not len(free):
        return out
    first, second = (np.array([row[i] for row in rows]) - 1 for i in (0, 1))
    a, b = (np.array([row[i] for row in rows]) for i in (2, 3))
    out[free] = _newton(first, second, a, b, free, n_positions)[free]
    return out


def _usable_pairs(pairs: dict, n_positions: int) -> list[tuple[int, int, float, float]]:
    """(k, k', A, B) with clicks, dropping positions with no click on their side of any pair."""
    rows = [(k, k2, a, b) for (k, k2), (a, b, _n) in pairs.items()
            if a + b > 0 and k2 <= n_positions]
    mass: dict[int, float] = {}
    for k, k2, a, b in rows:
        mass[k] = mass.get(k, 0.0) + a
        mass[k2] = mass.get(k2, 0.0) + b
    return [row for row in rows if mass[row[0]] > 0 and mass[row[1]] > 0]


def _newton(first, second, a, b, free, n_positions: int, iterations: int = 100) -> np.ndarray:
    """Maximises the concave conditional log-likelihood over theta[free] (theta[0] = 0)."""
    theta = np.zeros(n_positions)
    total = a + b

    def loglik(t):
        diff = t[second] - t[first]
        return float(np.sum(b * diff - total * np.logaddexp(0.0, diff)))

    current = loglik(theta)
    for _ in range(iterations):
        share = 1.0 / (1.0 + np.exp(theta[first] - theta[second]))
        residual, curvature = b - total * share, total * share * (1.0 - share)
        grad = np.bincount(second, residual, n_positions) - np.bincount(first, residual, n_positions)
        hess = np.zeros((n_positions, n_positions))
        np.add.at(hess, (second, second), curvature)
        np.add.at(hess, (first, first), curvature)
        np.add.at(hess, (first, second), -curvature)
        np.add.at(hess, (second, first), -curvature)
        step = np.linalg.solve(hess[np.ix_(free, free)] + 1e-9 * np.eye(len(free)), grad[free])
        scale, previous = 1.0, current
        while True:
            trial = theta.copy()
            trial[free] += scale * step
            current = loglik(trial)
            if current >= previous - 1e-12 or scale < 1e-6:
                break
            scale /= 2
        theta = trial
        if abs(current - previous) < 1e-10 * max(1.0, abs(previous)):
            break
    return theta


def _connected_to_first(usable: list[tuple]) -> set[int]:
    neighbours: dict[int, set[int]] = {}
    for k, k2, *_ in usable:
        neighbours.setdefault(k, set()).add(k2)
        neighbours.setdefault(k2, set()).add(k)
    seen, frontier = {1}, [1]
    while frontier:
        for nxt in neighbours.get(frontier.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def device_curve(sums: DeviceSums, min_interventions: int) -> tuple[list, list, list]:
    """(propensity, ci95, interventions) for positions 1..max_position; null where a position
    has fewer than `min_interventions` units in its pairs or is not connected to position 1."""
    size = sums.max_position
    counts = [sums.touching.get(k, 0) for k in range(1, size + 1)]
    if not size:
        return [], [], []
    replicate_fits = np.array([
        np.exp(fit_log_propensity(sums.pair_sums(r), size)) for r in range(sums.replicates + 1)])
    propensity, ci95 = [1.0], [[1.0, 1.0]]
    for k in range(2, size + 1):
        point, boot = replicate_fits[0, k - 1], replicate_fits[1:, k - 1]
        defined = boot[np.isfinite(boot)]
        if counts[k - 1] < min_interventions or not np.isfinite(point):
            propensity.append(None)
            ci95.append(None)
            continue
        propensity.append(float(point))
        ci95.append([float(v) for v in np.percentile(defined, _CI)]
                    if len(defined) >= _MIN_DEFINED * max(len(boot), 1) and len(boot) else None)
    return propensity, ci95, counts


def harvest_result(sums_by_device: dict[str, DeviceSums], min_interventions: int,
                   replicates: int) -> dict:
    """The JSON of DIR/propensity_harvested.json; devices most impressions first, then by name
    (the order of the device vocabulary preprocess writes)."""
    order = sorted(sums_by_device, key=lambda d: (-sums_by_device[d].impressions, d))
    result = {"propensity": {}, "ci95": {}, "interventions": {}, "units": {}}
    for device in order:
        curve, ci95, counts = device_curve(sums_by_device[device], min_interventions)
        result["propensity"][device] = curve
        result["ci95"][device] = ci95
        result["interventions"][device] = counts
        result["units"][device] = sums_by_device[device].units
    return dict(result, method=METHOD, bootstrap=replicates, min_interventions=min_interventions)


def harvest_units(units, replicates: int = DEFAULT_REPLICATES,
                  min_interventions: int = DEFAULT_MIN_INTERVENTIONS) -> dict:
    """Without Beam: units as (query_key, item_id, device, {position: (shown, clicks)}), each
    unit once → the same JSON the Beam step writes."""
    sums: dict[str, DeviceSums] = {}
    for query, item_id, device, counts in units:
        sums.setdefault(device, DeviceSums(replicates)).add_unit(
            unit_seed(query, item_id, device), counts)
    return harvest_result(sums, min_interventions, replicates)


def units_from_lines(lines, max_position: int | None = None) -> list[tuple]:
    """Intervention units of raw click-log lines (JSON strings or bytes), as the Beam step builds
    them but without its list rules: for logs already known to be clean (benchmarks, tests)."""
    counts: dict = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    for line in lines:
        row = json.loads(line)
        position = row["position"]
        if row.get("clicked") is None or (max_position and position > max_position):
            continue
        cell = counts[(query_key(row.get("context")), row["item_id"], row["device_type"])][position]
        cell[0] += 1
        cell[1] += int(row["clicked"])
    return [(*key, {k: tuple(v) for k, v in positions.items()}) for key, positions in counts.items()]


def curve_error(harvested: dict, device: str, curve) -> float | None:
    """Mean absolute difference between the harvested curve of `device` and `curve` (a list,
    position 1 first) over positions where both have a value; None when there are none."""
    mine = harvested.get("propensity", {}).get(device) or []
    diffs = [abs(a - b) for a, b in zip(mine[1:], list(curve)[1:])
             if a is not None and b is not None]
    return float(np.mean(diffs)) if diffs else None
