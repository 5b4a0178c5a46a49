"""Worlds: what can be shown per query, and how relevant each candidate truly is.

Every world produces the same `World`: logged queries (whose sessions become click logs) and judged
queries (full lists with graded labels), each a `QuerySet` of candidate items stored flat, query q
owning rows offsets[q]:offsets[q+1]. Per candidate there is a graded label 0..max, a latent
(continuous) relevance the logging policy sees at quality 1, and the stale error the policy sees at
quality 0 (see `stale_error`).

* synthetic (synthetic.py): relevance is a non-linear function of feature interactions, so a
  DeepFM relevance tower has something to learn that a linear model cannot.
* letor (here): lists and graded labels of a LETOR / SVMlight set; latent relevance = label + small
  noise.
* ids (idworld.py): a search-engine click log: query ids and document ids only.
"""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import letor as lt
from ranker.simulation.options import NUM_SHOWN

logger = logging.getLogger(__name__)

# The context object of every world holds the query id (declared as a feature in the ids world only).
QUERY_ID = "query_id"
LETOR_FEATURES = "letor_features"
MAX_RELEVANCE = 4
# Share of candidates per grade 0..4 in the synthetic and ids worlds: many 0/1, few 4.
LABEL_SHARES = (0.40, 0.30, 0.17, 0.09, 0.04)
LETOR_LABEL_NOISE = 0.25  # σ of the noise added to LETOR labels for the latent relevance
STALE_NOISE = 0.5  # weight of pure noise next to the feature projection in the stale error
LIST_SIZE_MARGIN = 4


@dataclasses.dataclass
class QuerySet:
    """Candidate lists of a set of queries, flat; per-query arrays have one row per query."""

    query_ids: list[str]
    offsets: np.ndarray  # int64 [Q + 1]
    item_ids: list[str]  # [N]
    relevance: np.ndarray  # float64 [N]: graded label
    latent: np.ndarray  # float64 [N]: continuous true relevance
    stale: np.ndarray  # float64 [N]: the logging policy's fixed per-item error, z-scored per query
    context: list[dict]  # [Q]: JSON-able context object of each query (always holds query_id)
    item_features: dict[str, np.ndarray]  # name → [N] (str or float) or [N, length] float

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def query_of_item(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_queries), self.lengths)

    def padded(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """[Q, longest list] view of a per-candidate array (pad = fill)."""
        out = np.full((self.num_queries, int(self.lengths.max())), fill, dtype=np.float64)
        out[self.query_of_item, self.local_index] = values
        return out

    @property
    def local_index(self) -> np.ndarray:
        return np.arange(self.num_items) - np.repeat(self.offsets[:-1], self.lengths)

    def subset(self, queries: np.ndarray) -> "QuerySet":
        """The QuerySet of some of its queries (indices, in the order given)."""
        queries = np.asarray(queries, dtype=np.int64)
        rows = np.concatenate([np.arange(self.offsets[q], self.offsets[q + 1]) for q in queries]
                              ) if len(queries) else np.zeros(0, dtype=np.int64)
        sizes = self.lengths[queries]
        return QuerySet(
            query_ids=[self.query_ids[q] for q in queries],
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            item_ids=[self.item_ids[i] for i in rows],
            relevance=self.relevance[rows],
            latent=self.latent[rows],
            stale=self.stale[rows],
            context=[self.context[q] for q in queries],
            item_features={k: np.asarray(v)[rows] for k, v in self.item_features.items()},
        )


@dataclasses.dataclass
class World:
    name: str
    logged: QuerySet
    judged: QuerySet | None
    spec: fs.FeatureSpec
    max_relevance: float
    info: dict


# ---------------------------------------------------------------------------------------------
# helpers shared by the worlds


def by_query_mean(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-candidate mean of x over the candidate's query."""
    sizes = np.diff(offsets)
    return np.repeat(np.add.reduceat(x, offsets[:-1]) / sizes, sizes)


def by_query_z(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x standardised within each query (0 where a query's values are all equal)."""
    centred = x - by_query_mean(x, offsets)
    std = np.sqrt(by_query_mean(centred ** 2, offsets))
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)


def stale_error(design: np.ndarray, labels: np.ndarray, offsets: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """The logging policy's fixed per-item error, z-scored within each query.

    A random linear projection of the (standardised) item features plus noise: the old model was
    wrong in a way that follows the features, which is what confounds a naive click model (it
    learns those features as relevance). The error is then made independent of the true grade: it
    is replaced by its quantile among the items of the same grade (uniform in every grade), so at
    logging quality 0 the order says nothing about relevance and E[relevance | position] is flat
    (the '0 = random' end of the scale), while within a grade it still follows the features.
    Removing only the part linear in relevance is not enough: extreme projections come from rare
    feature values that are rarely relevant, and the top slot then held ~15% less attractive items.
    """
    mean = design.mean(axis=0)
    std = design.std(axis=0)
    std[std < 1e-12] = 1.0
    weights = rng.standard_normal(design.shape[1]) / np.sqrt(design.shape[1])
    projection = ((design - mean) / std) @ weights
    projection = (projection - projection.mean()) / max(projection.std(), 1e-12)
    raw = projection + STALE_NOISE * rng.standard_normal(len(labels))
    return by_query_z(_quantile_within(raw, labels), offsets)


def _quantile_within(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value's quantile (centred, in (-0.5, 0.5)) among the values of its group."""
    out = np.empty_like(x, dtype=np.float64)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        ranks = np.argsort(np.argsort(x[idx], kind="stable"), kind="stable")
        out[idx] = (ranks + 0.5) / len(idx) - 0.5
    return out


def max_list_size(longest: int) -> int:
    """Room for the longest list the spec must hold (and the NUM_SHOWN logged slots): never below
    the longest judged list, so preprocess keeps every judged list whole."""
    return max(NUM_SHOWN, int(longest)) + LIST_SIZE_MARGIN


# ---------------------------------------------------------------------------------------------
# letor world


def letor_spec(width: int, max_list_size: int) -> fs.FeatureSpec:
    return fs.parse_spec({
        "max_list_size": max_list_size,
        "context": [],
        "item": [{"name": LETOR_FEATURES, "kind": fs.VECTOR, "length": width}],
    }, source="letor world")


def letor_world(train_path: str | None, test_path: str | None, rng: np.random.Generator) -> World:
    """Logged queries from `train_path`, judged lists from `test_path` (optional).

    Labels are clipped to [0, 4]; max_relevance is the highest label seen. Item ids are
    `<split>-<qid>-<k>` (k = the doc's place in its query), unique even where qids repeat.
    """
    if not train_path:
        raise RankerError("--world letor needs --letor-train PATH")
    files = [lt.read_letor(train_path)]
    if test_path:
        files.append(lt.read_letor(test_path))
    width, zero_based = lt.vector_width(files)
    if width < 1:
        raise RankerError(f"{train_path}: no features in the LETOR data")
    labels = [np.clip(f.labels, 0.0, float(MAX_RELEVANCE)) for f in files]
    clipped = sum(int(np.sum(f.labels != lab)) for f, lab in zip(files, labels))
    if clipped:
        logger.info("clipped %d labels outside [0, %d]", clipped, MAX_RELEVANCE)
    max_relevance = float(max(lab.max() for lab in labels))
    sets = []
    for split, data, lab, srng in zip(("train", "test"), files, labels, rng.spawn(len(files))):
        dense = data.dense(width, zero_based)
        noise_rng, stale_rng = srng.spawn(2)
        latent = lab + LETOR_LABEL_NOISE * noise_rng.standard_normal(len(lab))
        query_ids = [f"{split}-{q}" for q in data.query_ids]
        sizes = np.diff(data.offsets)
        local = np.arange(data.num_docs) - np.repeat(data.offsets[:-1], sizes)
        sets.append(QuerySet(
            query_ids=query_ids,
            offsets=data.offsets,
            item_ids=[f"{query_ids[q]}-{k}" for q, k in zip(np.repeat(np.arange(len(sizes)), sizes), local)],
            relevance=lab,
            latent=latent,
            stale=stale_error(dense, lab, data.offsets, stale_rng),
            context=[{QUERY_ID: qid} for qid in query_ids],
            item_features={LETOR_FEATURES: dense},
        ))
    logged = sets[0]
    judged = sets[1] if len(sets) > 1 else None
    longest = int(judged.lengths.max()) if judged is not None else NUM_SHOWN
    spec = letor_spec(width, max_list_size(longest))
    logger.info("letor world: %d logged queries (%d docs), %d judged (%d docs), %d features",
                logged.num_queries, logged.num_items, judged.num_queries if judged else 0,
                judged.num_items if judged else 0, width)
    return World(
        name="letor", logged=logged, judged=judged, spec=spec, max_relevance=max_relevance,
        info={"letor_train": train_path, "letor_test": test_path, "feature_width": width,
              "labels_clipped": clipped},
    )


def describe(world: World) -> dict:
    """Label counts per split, for truth.json."""
    out = {}
    for split, qs in (("logged", world.logged), ("judged", world.judged)):
        if qs is not None:
            values, counts = np.unique(qs.relevance, return_counts=True)
            out[split] = {_num_key(v): int(c) for v, c in zip(values, counts)}
    return out


def _num_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else json.dumps(float(value))
