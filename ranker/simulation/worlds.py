"""Worlds: what can be shown per query, and how relevant each candidate truly is.

Both worlds produce the same `World`: logged queries (whose sessions become click logs) and held-out
judged queries (full lists with graded labels), each a `QuerySet` of candidate items stored flat,
query q owning rows offsets[q]:offsets[q+1]. Per candidate there is a graded label 0..max, a latent
(continuous) relevance the logging policy sees at quality 1, and the stale error the policy sees at
quality 0 (see `stale_error`).

* synthetic: relevance is a non-linear function of feature interactions (intent × category,
  intent × brand, a quality S-curve, price × query length, intent vector · item embedding), so a
  DeepFM relevance tower has something to learn that a linear model cannot.
* letor: lists and graded labels of a LETOR / SVMlight set; latent relevance = label + small noise.
"""
from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import letor as lt

# Feature names (the spec written beside the logs declares them; `query_id` is context but undeclared).
QUERY_ID = "query_id"
QUERY_INTENT = "query_intent"
QUERY_LENGTH = "query_length"
ITEM_CATEGORY = "item_category"
ITEM_BRAND = "item_brand"
ITEM_PRICE = "item_price"
ITEM_QUALITY = "item_quality"
ITEM_EMBEDDING = "item_embedding"
LETOR_FEATURES = "letor_features"

NUM_INTENTS = 12
NUM_CATEGORIES = 30
NUM_BRANDS = 100
BRAND_HASH_BUCKETS = 200
EMBEDDING_DIM = 8
CANDIDATES = (15, 20)  # candidates per synthetic query, inclusive
TEST_FRACTION = 0.25  # judged queries per logged query (synthetic)
MAX_RELEVANCE = 4
# Share of candidates per grade 0..4 in the synthetic world: many 0/1, few 4.
LABEL_SHARES = (0.40, 0.30, 0.17, 0.09, 0.04)
LETOR_LABEL_NOISE = 0.25  # σ of the noise added to LETOR labels for the latent relevance
STALE_NOISE = 0.5  # weight of pure noise next to the feature projection in the stale error
LIST_SIZE_MARGIN = 4
MAX_LIST_SIZE_CAP = fs.DEFAULT_MAX_LIST_SIZE


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


@dataclasses.dataclass
class World:
    name: str
    logged: QuerySet
    judged: QuerySet | None
    spec: fs.FeatureSpec
    max_relevance: float
    info: dict


# ---------------------------------------------------------------------------------------------
# helpers shared by both worlds


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


def _max_list_size(longest: int) -> int:
    """Room for the longest judged list (and the 10 logged slots), capped at the spec default."""
    return min(MAX_LIST_SIZE_CAP, max(10, longest) + LIST_SIZE_MARGIN)


def _log(message: str) -> None:
    print(f"simulate: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# synthetic world


@dataclasses.dataclass(frozen=True)
class _RelevanceModel:
    """The hidden relevance function of the synthetic world (and the retrieval that feeds it)."""

    intent_category: np.ndarray  # [I, C] affinity
    intent_brand: np.ndarray  # [I, B]
    brand_base: np.ndarray  # [B]
    intent_vector: np.ndarray  # [I, D]
    category_price: np.ndarray  # [C] typical price level
    category_prior: np.ndarray  # [C] popularity (log)
    brand_p: np.ndarray  # [B] brand popularity

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_RelevanceModel":
        affinity = rng.normal(-0.3, 0.5, (NUM_INTENTS, NUM_CATEGORIES))
        for i in range(NUM_INTENTS):
            cats = rng.permutation(NUM_CATEGORIES)
            affinity[i, cats[:3]] += 2.0  # core categories of the intent
            affinity[i, cats[3:7]] += 1.0  # related ones
        mask = rng.random((NUM_INTENTS, NUM_BRANDS)) < 0.3
        brand_p = 1.0 / (np.arange(NUM_BRANDS) + 5.0)
        return cls(
            intent_category=affinity,
            intent_brand=np.where(mask, rng.normal(0.0, 0.6, mask.shape), 0.0),
            brand_base=rng.normal(0.0, 0.3, NUM_BRANDS),
            intent_vector=rng.normal(0.0, 1.5 / np.sqrt(EMBEDDING_DIM), (NUM_INTENTS, EMBEDDING_DIM)),
            category_price=rng.uniform(0.4, 2.0, NUM_CATEGORIES),
            category_prior=rng.normal(0.0, 0.5, NUM_CATEGORIES),
            brand_p=brand_p / brand_p.sum(),
        )

    def latent(self, intent, length, category, brand, price, quality, embedding, rng) -> np.ndarray:
        """Continuous true relevance of candidates ([N] arrays; intent/length per candidate)."""
        price_pref = np.clip(0.4 + 0.45 * (length - 1.0), 0.0, 5.0)  # long queries: pricier items
        price_fit = -(1.0 - np.exp(-(((price - price_pref) / 1.5) ** 2)))
        quality_curve = 2.0 / (1.0 + np.exp(-10.0 * (quality - 0.6)))
        match = np.tanh(np.einsum("nd,nd->n", self.intent_vector[intent], embedding))
        return (self.intent_category[intent, category]
                + self.intent_brand[intent, brand] + self.brand_base[brand]
                + quality_curve + price_fit + 1.2 * match
                + rng.normal(0.0, 0.3, len(intent)))


def _synthetic_queries(model: _RelevanceModel, num_queries: int, first_query: int, first_item: int,
                       rng: np.random.Generator) -> dict:
    intent = rng.integers(0, NUM_INTENTS, num_queries)
    length = np.clip(1 + rng.poisson(2.0, num_queries), 1, 10).astype(np.float64)
    sizes = rng.integers(CANDIDATES[0], CANDIDATES[1] + 1, num_queries)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    q_of = np.repeat(np.arange(num_queries), sizes)
    item_intent = intent[q_of]
    # Retrieval: categories near the intent are likelier candidates (Gumbel-max sampling).
    logits = 0.8 * model.intent_category[item_intent] + model.category_prior[None, :]
    category = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    brand = rng.choice(NUM_BRANDS, size=n, p=model.brand_p)
    price = np.round(np.clip(model.category_price[category] * rng.lognormal(0.0, 0.5, n), 0.0, 5.0), 3)
    quality = np.round(rng.beta(2.5, 2.0, n), 3)
    embedding = np.round(rng.standard_normal((n, EMBEDDING_DIM)), 3)
    latent = model.latent(item_intent, length[q_of], category, brand, price, quality, embedding, rng)
    design = np.concatenate([
        np.eye(NUM_CATEGORIES)[category], np.eye(NUM_BRANDS)[brand],
        price[:, None], quality[:, None], embedding], axis=1)
    query_ids = [f"q{first_query + i:05d}" for i in range(num_queries)]
    return dict(
        query_ids=query_ids,
        offsets=offsets,
        item_ids=[f"item{first_item + i:06d}" for i in range(n)],
        latent=latent,
        design=design,
        context=[{QUERY_ID: qid, QUERY_INTENT: f"intent_{int(i):02d}", QUERY_LENGTH: int(l)}
                 for qid, i, l in zip(query_ids, intent, length)],
        item_features={
            ITEM_CATEGORY: np.array([f"cat_{c:02d}" for c in category]),
            ITEM_BRAND: np.array([f"brand_{b:03d}" for b in brand]),
            ITEM_PRICE: price,
            ITEM_QUALITY: quality,
            ITEM_EMBEDDING: embedding,
        },
    )


def synthetic_spec(max_list_size: int) -> fs.FeatureSpec:
    return fs.parse_spec({
        "max_list_size": max_list_size,
        "context": [
            {"name": QUERY_INTENT, "kind": fs.CATEGORICAL},
            {"name": QUERY_LENGTH, "kind": fs.NUMERIC},
        ],
        "item": [
            {"name": ITEM_CATEGORY, "kind": fs.CATEGORICAL},
            {"name": ITEM_BRAND, "kind": fs.CATEGORICAL, "hash_buckets": BRAND_HASH_BUCKETS},
            {"name": ITEM_PRICE, "kind": fs.NUMERIC},
            {"name": ITEM_QUALITY, "kind": fs.NUMERIC},
            {"name": ITEM_EMBEDDING, "kind": fs.VECTOR, "length": EMBEDDING_DIM},
        ],
    }, source="synthetic world")


def synthetic_world(num_queries: int, rng: np.random.Generator) -> World:
    """`num_queries` logged queries plus TEST_FRACTION as many judged ones, 15–20 candidates each.

    The relevance function is drawn from its own child stream, so the same seed gives the same
    hidden function for any number of queries; judged queries come from the same generator.
    """
    if num_queries < 1:
        raise RankerError(f"--num-queries must be at least 1, got {num_queries}")
    model_rng, logged_rng, judged_rng, stale_rng = rng.spawn(4)
    model = _RelevanceModel.draw(model_rng)
    num_judged = max(1, int(round(TEST_FRACTION * num_queries)))
    logged = _synthetic_queries(model, num_queries, 0, 0, logged_rng)
    judged = _synthetic_queries(model, num_judged, num_queries, len(logged["item_ids"]), judged_rng)
    # Grades from quantiles of the logged candidates' latent relevance; the same cut points for both.
    cuts = np.quantile(logged["latent"], np.cumsum(LABEL_SHARES)[:-1])
    stale_logged_rng, stale_judged_rng = stale_rng.spawn(2)
    sets = []
    for raw, srng in ((logged, stale_logged_rng), (judged, stale_judged_rng)):
        labels = np.searchsorted(cuts, raw["latent"], side="right").astype(np.float64)
        sets.append(QuerySet(
            query_ids=raw["query_ids"],
            offsets=raw["offsets"],
            item_ids=raw["item_ids"],
            relevance=labels,
            latent=raw["latent"],
            stale=stale_error(raw["design"], labels, raw["offsets"], srng),
            context=raw["context"],
            item_features=raw["item_features"],
        ))
    logged_set, judged_set = sets
    spec = synthetic_spec(_max_list_size(int(judged_set.lengths.max())))
    _log(f"synthetic world: {logged_set.num_queries} logged queries ({logged_set.num_items} "
         f"candidates), {judged_set.num_queries} judged ({judged_set.num_items} candidates)")
    return World(
        name="synthetic", logged=logged_set, judged=judged_set, spec=spec,
        max_relevance=float(MAX_RELEVANCE),
        info={"label_shares": list(LABEL_SHARES), "label_cut_points": [float(c) for c in cuts]},
    )


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
        _log(f"clipped {clipped} labels outside [0, {MAX_RELEVANCE}]")
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
    longest = int(judged.lengths.max()) if judged is not None else 10
    if longest > MAX_LIST_SIZE_CAP:
        _log(f"longest judged list has {longest} docs; max_list_size capped at {MAX_LIST_SIZE_CAP}")
    spec = letor_spec(width, _max_list_size(longest))
    _log(f"letor world: {logged.num_queries} logged queries ({logged.num_items} docs)"
         + (f", {judged.num_queries} judged ({judged.num_items} docs)" if judged else "")
         + f", {width} features")
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
