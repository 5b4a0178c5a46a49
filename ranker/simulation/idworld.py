"""The ids world: a search-engine click log, where queries and documents are ids and nothing else.

* Queries `q00000…` carry only their id (context feature `query_id`, a vocabulary categorical).
* Documents `d000000…` come from a shared pool with Zipf-like popularity, so a popular document is a
  candidate of many queries; its only feature is `doc_id` (vocabulary categorical), which is also
  its `item_id`.
* True relevance belongs to the (query, document) pair: latent = DOC_QUALITY_WEIGHT · a document
  quality + a pair term, both standard normal draws, graded 0..4 by quantiles with LABEL_SHARES.
  The spec declares the cross query_id × doc_id (hashed) so a model can give each pair its own
  relevance, as a click model (PBM, UBM) does.
* The logging policy's stale error follows the document (a random per-document error plus noise,
  made independent of the grade as in the other worlds), so a naive model learns it as doc quality.
* Judged lists: the full candidate lists of `num_judged` LOGGED queries (sampled), with their true
  grades. New query ids would be unknown ids to a model that only sees ids, so held-out queries
  would be meaningless here; judged nDCG in this world measures ranking the logged queries' lists.
"""
from __future__ import annotations

import logging

import numpy as np

from ranker.features import spec as fs
from ranker.simulation.options import NUM_SHOWN
from ranker.simulation.worlds import (LABEL_SHARES, MAX_RELEVANCE, QUERY_ID, QuerySet, World,
                                      max_list_size, stale_error)

logger = logging.getLogger(__name__)

DOC_ID = "doc_id"
QUERY_DOC_CROSS = "query_x_doc"
CANDIDATES = (10, 20)  # candidates per query, inclusive
DOCS_PER_QUERY = 5  # size of the document pool per query
MIN_DOCS = 2 * CANDIDATES[1]
ZIPF_OFFSET = 10.0  # popularity of the doc of rank r ∝ 1 / (r + offset)
OVERSAMPLE = 3  # draws per candidate slot before de-duplicating
DOC_QUALITY_WEIGHT = 0.7  # share of the relevance a document carries across its queries
CROSS_BUCKETS_PER_PAIR = 4
MAX_CROSS_BUCKETS = 2 ** 20


def ids_spec_json(list_size: int, num_pairs: int) -> dict:
    """The spec of the ids world as JSON: two id features and their hashed cross."""
    return {
        "max_list_size": list_size,
        "context": [{"name": QUERY_ID, "kind": fs.CATEGORICAL}],
        "item": [{"name": DOC_ID, "kind": fs.CATEGORICAL}],
        "crosses": [{"name": QUERY_DOC_CROSS, "features": [QUERY_ID, DOC_ID],
                     "hash_buckets": min(CROSS_BUCKETS_PER_PAIR * num_pairs, MAX_CROSS_BUCKETS)}],
    }


def _candidates(num_queries: int, num_docs: int, rng: np.random.Generator):
    """Offsets and the doc of each candidate: per query a popularity-weighted draw without
    replacement from the pool (draws with replacement, first occurrences kept, topped up if short)."""
    sizes = rng.integers(CANDIDATES[0], CANDIDATES[1] + 1, num_queries)
    popularity = 1.0 / (np.arange(num_docs) + ZIPF_OFFSET)
    cdf = np.cumsum(popularity / popularity.sum())

    def draw(shape):
        return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), num_docs - 1)

    draws = draw((num_queries, OVERSAMPLE * CANDIDATES[1]))
    lists = []
    for q in range(num_queries):
        docs = list(dict.fromkeys(draws[q].tolist()))
        while len(docs) < sizes[q]:
            docs = list(dict.fromkeys(docs + draw(CANDIDATES[1]).tolist()))
        lists.append(docs[: sizes[q]])
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.concatenate(lists)


def ids_world(num_queries: int, num_judged: int, rng: np.random.Generator) -> World:
    """`num_queries` id-only queries; `num_judged` of them (sampled) also as judged lists."""
    pool_rng, rel_rng, stale_rng, judged_rng = rng.spawn(4)
    num_docs = max(MIN_DOCS, DOCS_PER_QUERY * num_queries)
    offsets, docs = _candidates(num_queries, num_docs, pool_rng)
    doc_quality = rel_rng.standard_normal(num_docs)
    latent = DOC_QUALITY_WEIGHT * doc_quality[docs] + rel_rng.standard_normal(len(docs))
    cuts = np.quantile(latent, np.cumsum(LABEL_SHARES)[:-1])
    labels = np.searchsorted(cuts, latent, side="right").astype(np.float64)
    doc_error = stale_rng.standard_normal(num_docs)
    doc_names = np.array([f"d{d:06d}" for d in range(num_docs)])[docs]
    query_ids = [f"q{q:05d}" for q in range(num_queries)]
    logged = QuerySet(
        query_ids=query_ids,
        offsets=offsets,
        item_ids=doc_names.tolist(),
        relevance=labels,
        latent=latent,
        stale=stale_error(doc_error[docs][:, None], labels, offsets, stale_rng),
        context=[{QUERY_ID: qid} for qid in query_ids],
        item_features={DOC_ID: doc_names},
    )
    judged = None
    if num_judged:
        picked = np.sort(judged_rng.choice(num_queries, size=num_judged, replace=False))
        judged = logged.subset(picked)
    longest = int(judged.lengths.max()) if judged is not None else NUM_SHOWN
    spec = fs.parse_spec(ids_spec_json(max_list_size(longest), len(docs)), source="ids world")
    logger.info("ids world: %d queries, %d candidates over %d documents, %d judged queries",
                num_queries, len(docs), len(np.unique(docs)), num_judged)
    return World(
        name="ids", logged=logged, judged=judged, spec=spec, max_relevance=float(MAX_RELEVANCE),
        info={"label_shares": list(LABEL_SHARES), "label_cut_points": [float(c) for c in cuts],
              "documents": num_docs, "distinct_documents_shown": int(len(np.unique(docs))),
              "doc_quality_weight": DOC_QUALITY_WEIGHT,
              "judged_lists": "full candidate lists of a sample of the logged queries"},
    )
