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
    gaps = [abs(a - b) for d in metrics["propensity"]
            for a, b in zip(metrics["propensity"][d][1:], metrics["propensity_truth"][d][1:])]
    assert min(gaps) <= metrics["propensity_error"] <= max(gaps)  # a weighted mean of the gaps
    assert "propensity_reference_logit" in metrics
    for value in metrics["judged"].values():
        assert value >= 0
    per_list = metrics["judged_per_list"]
    assert sorted(per_list["request_id"]) == sorted(f"j{i}" for i in range(40))
    assert np.mean(per_list["ndcg@10"]) == pytest.approx(metrics["judged"]["ndcg@10"], abs=1e-3)
    # IPS click metrics on the eval split, with the truth's propensities (simulated logs)
    ips = metrics["ips"]
    assert ips["propensity_source"] == "truth" and ips["clip"] == 20.0 and 0 < ips["lists"] <= 120
    assert ips["ci95"][0] <= ips["ndcg@10"] <= ips["ci95"][1] and 0 <= ips["clipped_clicks"] <= 1
    assert set(metrics["ips_by_device"]) <= {"desktop", "mobile"}
    assert np.mean(metrics["ips_per_list"]["ndcg@10"]) == pytest.approx(ips["ndcg@10"], abs=1e-4)
    assert len(metrics["clicks_per_list"]["log_loss"]) == 120
    assert (tmp_path / "propensity.png").stat().st_size > 0  # beside metrics.json


def test_evaluate_prints_a_table_and_takes_a_propensity_source(pal_dir, tiny_data, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model-dir", pal_dir, "--data", tiny_data, "--output", str(out),
                 "--propensities", "model", "--ips-clip", "5"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["ips"]["propensity_source"] == "model" and metrics["ips"]["clip"] == 5.0
    text = capsys.readouterr().err
    assert "IPS click nDCG@10" in text and "propensity, desktop" in text and "learned" in text
    assert main(["evaluate", "--model-dir", pal_dir, "--data", tiny_data, "--ips-clip", "0.5"]) == 2
    assert main(["evaluate", "--model-dir", pal_dir, "--data", tiny_data, "--propensities",
                 str(tmp_path / "none.json")]) == 2


def test_disagreement_flags_learned_values_outside_the_harvested_interval():
    learned = {"desktop": [1.0, 0.5, 0.2], "mobile": [1.0, 0.3]}
    intervals = {"desktop": [[1.0, 1.0], [0.4, 0.6], [0.25, 0.35]], "mobile": [[1.0, 1.0], None]}
    assert evaluate.disagreement(learned, intervals) == {"desktop": [3], "mobile": []}


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
    perfect, per_list = evaluate._judged_metrics(_FixedScorer(True), ds)
    assert per_list["ndcg@10"] == [1.0, 1.0]
    assert perfect["ndcg@10"] == pytest.approx(1.0) and perfect["lists"] == 2
    worst, _ = evaluate._judged_metrics(_FixedScorer(False), ds)
    # list 1 reversed: gains 1 (3 -> rank 3 of 3 valid), hand-computed DCG/IDCG
    idcg1 = 7 + 1 / np.log2(3)
    dcg1 = 0 + 1 / np.log2(3) + 7 / np.log2(4)
    idcg2, dcg2 = 3.0, 3 / np.log2(3)
    assert worst["ndcg@10"] == pytest.approx((dcg1 / idcg1 + dcg2 / idcg2) / 2, rel=1e-4)


def test_evaluate_refuses_bad_arguments(tiny_data, capsys):
    assert main(["evaluate", "--data", tiny_data]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["evaluate", "--model-dir", "/nonexistent", "--data", tiny_data]) == 2


# --- hostile input (issue 13): one line, before any evaluation runs ---------------------------

def _last_line_only(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_output_into_a_missing_folder_fails_before_evaluating(pal_dir, tiny_data, tmp_path, monkeypatch, capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before --output was checked")

    monkeypatch.setattr(evaluate, "evaluate", must_not_run)
    missing = tmp_path / "no" / "such" / "metrics.json"
    assert main(["evaluate", "--model-dir", pal_dir, "--data", tiny_data, "--output", str(missing)]) == 2
    assert "no folder" in _last_line_only(capsys)
    assert main(["evaluate", "--model-dir", pal_dir, "--data", tiny_data, "--output", str(tmp_path)]) == 2
    assert "is a folder" in _last_line_only(capsys)


def test_data_of_another_spec_is_one_line(pal_dir, tiny_data, tmp_path, capsys):
    import shutil

    lacking = shutil.copytree(tiny_data, tmp_path / "d")
    spec = json.loads((lacking / fs.SPEC_FILENAME).read_text())
    spec["item"] = [f for f in spec["item"] if f["name"] != "price"]
    (lacking / fs.SPEC_FILENAME).write_text(json.dumps(spec))
    assert main(["evaluate", "--model-dir", pal_dir, "--data", str(lacking)]) == 2
    assert "lacks feature(s) ['price']" in _last_line_only(capsys)


def test_foreign_saved_model_is_one_line(tiny_data, tmp_path, capsys):
    module = tf.Module()
    module.score = tf.function(lambda x: {"scores": x * 2.0},
                               input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.score})
    assert main(["evaluate", "--saved-model", str(tmp_path / "1"), "--data", tiny_data]) == 2
    assert "not a `ranker export` SavedModel" in _last_line_only(capsys)


def test_truncated_checkpoint_is_one_line(pal_dir, tiny_data, tmp_path, capsys):
    import os
    import shutil

    model_dir = shutil.copytree(pal_dir, tmp_path / "m")
    for folder, _, files in os.walk(model_dir):
        for name in (n for n in files if ".data-" in n):
            os.truncate(os.path.join(folder, name), 10)
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", tiny_data]) == 2
    assert "corrupt or truncated checkpoint" in _last_line_only(capsys)
