"""`ranker evaluate`: metrics.json as in the SPEC, masking of padded slots, propensity error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from ranker.cli import main
from ranker.features import spec as fs
from ranker.models import evaluate
from ranker.models.train import train


@pytest.fixture(scope="module")
def pal_dir(tiny_data, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("pal"))
    train(tiny_data, model_dir, variant="pal", epochs=2, verbose=0)
    return model_dir


def test_metrics_json_has_the_spec_layout(pal_dir, tiny_data, tmp_path):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model-dir", pal_dir, "--data", tiny_data, "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["judged"]) == {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "lists"}
    assert metrics["judged"]["lists"] == 40
    assert set(metrics["clicks"]) == {"log_loss", "auc", "ndcg@10", "lists"}
    assert metrics["clicks"]["lists"] == 120
    assert set(metrics["propensity"]) == {"desktop", "mobile"}
    assert all(curve[0] == 1.0 and len(curve) == 6 for curve in metrics["propensity"].values())
    assert metrics["propensity_error"] == pytest.approx(
        evaluate.propensity_error(metrics["propensity"], metrics["propensity_truth"]))
    for value in metrics["judged"].values():
        assert value >= 0


def test_propensity_error_is_mean_absolute_error_past_position_one():
    learned = {"desktop": [1.0, 0.5, 0.3], "mobile": [1.0, 0.2]}
    truth = {"desktop": [1.0, 0.6, 0.1, 0.05], "tablet": [1.0, 0.9]}
    assert evaluate.propensity_error(learned, truth) == pytest.approx((0.1 + 0.2) / 2)


class _FixedScorer:
    """Scores by a known rule so nDCG can be checked by hand."""

    def __init__(self, perfect: bool):
        self.perfect = perfect

    def relevance(self, features):
        labels = features[fs.RELEVANCE]
        return labels if self.perfect else -labels


def test_judged_ndcg_is_one_for_perfect_scores_and_ignores_padding():
    labels = tf.constant([[3.0, 0.0, 1.0, -1.0], [0.0, 2.0, -1.0, -1.0]])
    batch = {fs.RELEVANCE: labels, fs.MASK: labels >= 0}
    ds = tf.data.Dataset.from_tensors(batch)
    perfect = evaluate._judged_metrics(_FixedScorer(True), ds)
    assert perfect["ndcg@10"] == pytest.approx(1.0) and perfect["lists"] == 2
    worst = evaluate._judged_metrics(_FixedScorer(False), ds)
    # list 1 reversed: gains 1 (3 -> rank 3 of 3 valid), hand-computed DCG/IDCG
    idcg1 = 7 + 1 / np.log2(3)
    dcg1 = 0 + 1 / np.log2(3) + 7 / np.log2(4)
    idcg2, dcg2 = 3.0, 3 / np.log2(3)
    assert worst["ndcg@10"] == pytest.approx((dcg1 / idcg1 + dcg2 / idcg2) / 2, rel=1e-4)


def test_evaluate_refuses_bad_arguments(tiny_data, capsys):
    assert main(["evaluate", "--data", tiny_data]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["evaluate", "--model-dir", "/nonexistent", "--data", tiny_data]) == 2
