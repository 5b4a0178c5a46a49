"""IPS click metrics (ranker.models.counterfactual): weights, per-list DCG, unbiasedness under the
position-based model, the propensity sources and the paired change the gate uses."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ranker.artifacts import HARVESTED_FILE, TRUTH_FILE
from ranker.errors import RankerError
from ranker.models import counterfactual as cf

CURVES = {"desktop": [1.0, 0.5, 0.25], "mobile": [1.0, 0.2]}


def test_weights_follow_position_and_device_and_are_clipped():
    positions = np.array([[1, 2, 3, 4], [1, 2, 3, 0]])
    w = cf.weights(positions, np.array(["desktop", "mobile"]), CURVES, clip=4.5)
    assert w[0].tolist() == [1.0, 2.0, 4.0, 4.0]  # past the curve: its last value
    assert w[1].tolist() == [1.0, 4.5, 4.5, 1.0]  # 1 / 0.2 = 5 clipped at 4.5; padding position 0
    unknown = cf.weights(np.array([[2]]), np.array(["tv"]), CURVES, clip=100.0)
    assert unknown[0, 0] == pytest.approx(1 / np.mean([0.5, 0.2]))  # the devices' mean curve
    assert cf.weights(positions, np.array(["desktop", "mobile"]), {}, 1.0).tolist() == np.ones((2, 4)).tolist()


def test_per_list_dcg_by_hand():
    # One list: items logged at positions 1, 2, 3; clicks on the items at 2 and 3 (desktop: w 2, 4).
    clicks = np.array([[0.0, 1.0, 1.0, -1.0]])
    scores = np.array([[0.1, 0.5, 0.9, 9.0]])  # the padded slot's high score is ignored
    rows = cf.per_list(clicks, scores, np.array([[1, 2, 3, 0]]), np.array(["desktop"]), CURVES, clip=10)
    want = 4 / np.log2(2) + 2 / np.log2(3)  # model order: pos-3 item first, then pos-2
    assert rows["dcg"][0] == pytest.approx(want) and rows["ideal"][0] == pytest.approx(want)
    assert rows["weighted"][0] == 6 and rows["clicks"][0] == 2 and rows["clipped"][0] == 0
    reverse = cf.per_list(clicks, -scores, np.array([[1, 2, 3, 0]]), np.array(["desktop"]), CURVES, clip=10)
    assert reverse["dcg"][0] == pytest.approx(2 / np.log2(3) + 4 / np.log2(4))


def _pbm_logs(rng, lists=20000, slots=5, eta=1.0):
    """Relevance in {0..3}, a logging order that favours relevance, PBM clicks with p_k = k^-eta."""
    relevance = rng.integers(0, 4, size=(lists, slots)).astype(float)
    logged = np.argsort(-(relevance + rng.normal(0, 1.5, size=relevance.shape)), axis=1)
    relevance = np.take_along_axis(relevance, logged, axis=1)  # slot j shown at position j + 1
    positions = np.tile(np.arange(1, slots + 1), (lists, 1))
    examined = rng.random(relevance.shape) < positions ** -eta
    clicks = (examined & (rng.random(relevance.shape) < relevance / 3)).astype(float)
    curves = {"desktop": (np.arange(1, slots + 1) ** -eta).tolist()}
    return relevance, positions, clicks, np.array(["desktop"] * lists), curves


def test_ips_dcg_is_unbiased_and_orders_rankings_by_relevance():
    rng = np.random.default_rng(0)
    relevance, positions, clicks, devices, curves = _pbm_logs(rng)
    by_relevance = relevance + rng.random(relevance.shape) * 0.01
    full_information = cf.per_list((relevance / 3 > rng.random(relevance.shape)).astype(float), by_relevance,
                                   positions, devices, {}, 1.0)  # every item examined
    ips = cf.per_list(clicks, by_relevance, positions, devices, curves, clip=1e9)
    assert ips["dcg"].mean() == pytest.approx(full_information["dcg"].mean(), rel=0.03)
    ratio = {}
    for name, scores in {"relevance": by_relevance, "logging": -positions.astype(float),
                         "reverse": positions.astype(float)}.items():
        for weighted in (True, False):
            rows = cf.per_list(clicks, scores, positions, devices, curves if weighted else {}, 1e9 if weighted else 1.0)
            ratio[name, weighted] = rows["dcg"].sum() / rows["ideal"].sum()
    assert ratio["relevance", True] > ratio["logging", True] + 0.02 > ratio["reverse", True] + 0.04
    # Unweighted clicks favour the logging order: it put the clicked items where they were clicked.
    assert ratio["logging", False] > ratio["relevance", False]


def test_summarise_ratio_contributions_and_devices():
    rows = {"dcg": np.array([1.0, 0.0, 2.0, 0.5]), "ideal": np.array([2.0, 0.0, 2.0, 1.0]),
            "weighted": np.array([2.0, 0.0, 3.0, 1.0]), "clicks": np.array([1, 0, 2, 1]),
            "clipped": np.array([0, 0, 1, 0])}
    out = cf.summarise(["a", "b", "c", "d"], ["desktop", "desktop", "mobile", "mobile"], rows,
                       {"source": "truth", "filled_positions": 0}, 20.0)
    ips = out["ips"]
    assert ips["ndcg@10"] == pytest.approx(3.5 / 5.0) and ips["lists"] == 3  # b had no click
    assert ips["ci95"][0] <= ips["ndcg@10"] <= ips["ci95"][1]
    assert ips["clipped_clicks"] == pytest.approx(0.25) and ips["self_normalised_dcg@10"] == pytest.approx(3.5 / 6, abs=1e-5)
    per_list = out["ips_per_list"]
    assert per_list["request_id"] == ["a", "c", "d"]
    assert np.mean(per_list["ndcg@10"]) == pytest.approx(ips["ndcg@10"], abs=1e-5)
    assert out["ips_by_device"]["mobile"]["ndcg@10"] == pytest.approx(2.5 / 3.0, abs=1e-5)
    with pytest.raises(RankerError, match="no clicked list"):
        cf.summarise(["b"], ["desktop"], {k: v[1:2] for k, v in rows.items()}, {"source": "x", "filled_positions": 0}, 20.0)


def test_paired_difference_sees_a_consistent_gain():
    ids = [f"r{i}" for i in range(200)]
    base = np.random.default_rng(1).random(200)
    change = cf.paired_difference({"request_id": ids, "v": (base + 0.05).tolist()},
                                  {"request_id": ids + ["extra"], "v": base.tolist() + [None]}, "v")
    assert change["diff"] == pytest.approx(0.05) and change["verdict"] == "better" and change["lists"] == 200


def test_propensity_sources(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(RankerError, match="no position propensities"):
        cf.propensities(str(data))
    model = {"desktop": [1.0, 0.6]}
    assert cf.propensities(str(data), cf.AUTO, model)["source"] == cf.MODEL
    (data / HARVESTED_FILE).write_text(json.dumps({"propensity": {"desktop": [1.0, 0.5, None, 0.2],
                                                                  "mobile": [1.0, None]}}))
    harvested = cf.propensities(str(data), cf.AUTO, model)
    assert harvested["source"] == cf.HARVESTED and harvested["filled_positions"] == 1
    assert harvested["curves"] == {"desktop": [1.0, 0.5, 0.5, 0.2]}  # mobile has no known position
    (data / TRUTH_FILE).write_text(json.dumps({"propensity": {"desktop": [0.8, 0.4]}}))
    truth = cf.propensities(str(data), cf.AUTO, model)
    assert truth["source"] == cf.TRUTH and truth["curves"] == {"desktop": [1.0, 0.5]}  # relative to p1
    assert cf.propensities(str(data), cf.HARVESTED)["source"] == cf.HARVESTED
    given = tmp_path / "p.json"
    given.write_text(json.dumps({"desktop": [1.0, 0.0]}))
    with pytest.raises(RankerError, match="positive numbers"):
        cf.propensities(str(data), str(given))
    with pytest.raises(RankerError, match="no such file"):
        cf.propensities(str(data), str(tmp_path / "missing.json"))
