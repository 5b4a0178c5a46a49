"""benchmarks/click_models.py: EM recovers a known PBM, and PBM beats per-document CTR there."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import click_models as cm  # noqa: E402

GAMMA = np.array([1.0, 0.62, 0.45, 0.35, 0.28, 0.22, 0.18, 0.15])


def _pbm_sessions(rng, alpha: np.ndarray, sessions_per_query: int) -> cm.Sessions:
    """Clicks from a known PBM; every session shows its query's documents in a random order."""
    n_queries, n_docs = alpha.shape
    order = np.stack([rng.permutation(n_docs) for _ in range(n_queries * sessions_per_query)])
    query = np.repeat(np.arange(n_queries), sessions_per_query)[:, None].repeat(n_docs, 1)
    p = alpha[query, order] * GAMMA[None, :n_docs]
    clicked = (rng.random(p.shape) < p).astype(np.int64)
    return cm.Sessions(query=np.char.add("q", query.astype(str)).ravel(),
                       doc=np.char.add("d", order.astype(str)).ravel(),
                       position=np.tile(np.arange(1, n_docs + 1), len(order)),
                       device=np.full(clicked.size, "desktop"), clicked=clicked.ravel(),
                       session=np.repeat(np.arange(len(order)), n_docs))


@pytest.fixture(scope="module")
def pbm_world():
    rng = np.random.default_rng(7)
    alpha = rng.uniform(0.05, 0.9, size=(25, len(GAMMA)))
    return _pbm_sessions(rng, alpha, 200), _pbm_sessions(rng, alpha, 40)


def test_pbm_em_recovers_the_examination_curve(pbm_world):
    train, _ = pbm_world
    n = len(GAMMA)  # one (query, doc) pair shown once at every position: p(pos) / p(1) = γ ratio
    probe = cm.Sessions(query=np.full(n, "q0"), doc=np.full(n, "d0"), position=np.arange(1, n + 1),
                        device=np.full(n, "desktop"), clicked=np.zeros(n, np.int64),
                        session=np.arange(n))
    p = cm.predict("pbm", train, probe, iterations=100)
    np.testing.assert_allclose(p / p[0], GAMMA / GAMMA[0], atol=0.05)


def test_pbm_beats_per_document_and_per_position_ctr(pbm_world):
    train, test = pbm_world
    loss = {m: cm.log_loss(test.clicked, cm.predict(m, train, test)) for m in cm.MODELS}
    assert loss["pbm"] < loss["ctr-document"] - 0.01
    assert loss["pbm"] < loss["ctr-position"] - 0.01
    assert loss["ubm"] < loss["ctr-document"]  # UBM nests PBM's curve (distance = position)


def test_previous_click_is_the_latest_click_above_in_the_same_session():
    s = cm.Sessions(query=np.full(7, "q"), doc=np.full(7, "d"),
                    position=np.array([1, 2, 3, 4, 1, 2, 3]), device=np.full(7, "x"),
                    clicked=np.array([0, 1, 0, 1, 1, 0, 0]),
                    session=np.array([0, 0, 0, 0, 1, 1, 1]))
    assert s.previous_click.tolist() == [0, 0, 2, 2, 0, 1, 1]


def test_unseen_pairs_fall_back_to_the_prior(pbm_world):
    train, _ = pbm_world
    probe = cm.Sessions(query=np.array(["new"]), doc=np.array(["new"]), position=np.array([1]),
                        device=np.array(["desktop"]), clicked=np.array([0]), session=np.array([0]))
    ctr = cm.predict("ctr-document", train, probe)
    assert ctr[0] == pytest.approx(train.clicked.mean())
    assert 0.0 < cm.predict("pbm", train, probe)[0] < 1.0


def test_unknown_model_is_refused(pbm_world):
    with pytest.raises(ValueError, match="unknown click model"):
        cm.predict("dbn", *pbm_world)


def test_fit_and_score_reads_preprocess_output(tiny_data):
    from ranker.errors import RankerError

    result = cm.fit_and_score("pbm", tiny_data, iterations=5)
    assert result["impressions"] == 120 * 6  # every eval impression of conftest's tiny world
    assert result["query_key"] == "intent"  # no query_id in the records: the declared context
    assert 0.0 < result["log_loss"] < 1.0
    with pytest.raises(RankerError, match="unknown click model"):
        cm.fit_and_score("dbn", tiny_data)
