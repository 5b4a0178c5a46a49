"""The synthetic world: relevance is a non-linear function of feature interactions (intent ×
category, intent × brand, a quality S-curve, price × query length, intent vector · item embedding),
so a DeepFM relevance tower has something to learn that a linear model cannot."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ranker.features import spec as fs
from ranker.simulation.options import NUM_SHOWN
from ranker.simulation.worlds import (LABEL_SHARES, MAX_RELEVANCE, QUERY_ID, QuerySet, World,
                                      max_list_size, stale_error)

logger = logging.getLogger(__name__)

QUERY_INTENT = "query_intent"
QUERY_LENGTH = "query_length"
ITEM_CATEGORY = "item_category"
ITEM_BRAND = "item_brand"
ITEM_PRICE = "item_price"
ITEM_QUALITY = "item_quality"
ITEM_EMBEDDING = "item_embedding"

NUM_INTENTS = 12
NUM_CATEGORIES = 30
NUM_BRANDS = 100
BRAND_HASH_BUCKETS = 200
EMBEDDING_DIM = 8
CANDIDATES = (15, 20)  # candidates per synthetic query, inclusive


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


def synthetic_spec(list_size: int) -> fs.FeatureSpec:
    return fs.parse_spec({
        "max_list_size": list_size,
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


def synthetic_world(num_queries: int, num_judged: int, rng: np.random.Generator) -> World:
    """`num_queries` logged plus `num_judged` held-out judged queries (none at 0), 15–20 candidates each.

    The relevance function is drawn from its own child stream, so the same seed gives the same
    hidden function for any number of queries; judged queries come from the same generator.
    """
    model_rng, logged_rng, judged_rng, stale_rng = rng.spawn(4)
    model = _RelevanceModel.draw(model_rng)
    raws = [_synthetic_queries(model, num_queries, 0, 0, logged_rng)]
    if num_judged:
        raws.append(_synthetic_queries(model, num_judged, num_queries, len(raws[0]["item_ids"]),
                                       judged_rng))
    # Grades from quantiles of the logged candidates' latent relevance; the same cut points for both.
    cuts = np.quantile(raws[0]["latent"], np.cumsum(LABEL_SHARES)[:-1])
    sets = []
    for raw, srng in zip(raws, stale_rng.spawn(2)):
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
    logged_set, judged_set = sets[0], (sets[1] if num_judged else None)
    longest = int(judged_set.lengths.max()) if judged_set is not None else NUM_SHOWN
    logger.info("synthetic world: %d logged queries (%d candidates), %d judged (%d candidates)",
                logged_set.num_queries, logged_set.num_items,
                num_judged, judged_set.num_items if judged_set is not None else 0)
    return World(
        name="synthetic", logged=logged_set, judged=judged_set,
        spec=synthetic_spec(max_list_size(longest)), max_relevance=float(MAX_RELEVANCE),
        info={"label_shares": list(LABEL_SHARES), "label_cut_points": [float(c) for c in cuts]},
    )
