"""The gate on click logs alone: in a world where judged nDCG says the naive model is worse than the
debiased one, `validate` with no judged lists (IPS click nDCG@10, the default there) refuses the
naive candidate against the debiased baseline and blesses the debiased one against the naive."""
from __future__ import annotations

import os
import shutil

import pytest

from ranker import cli
from ranker.artifacts import JUDGED
from ranker.models import evaluate
from ranker.serving import export, validate

# Random-ish logging (W = 0.2) and one device with a steep examination curve: position bias is what
# the naive model learns, and what IPS weights undo.
WORLD = ["--world", "synthetic", "--num-queries", "300", "--sessions-per-query", "80", "--num-judged", "200",
         "--logging-quality", "0.2", "--devices", "mobile:1:1.5", "--seed", "4"]
TRAIN = ["--min-steps", "600", "--seed", "0"]


@pytest.mark.slow
def test_ips_gate_refuses_naive_against_debiased(tmp_path):
    logs, data = tmp_path / "logs", tmp_path / "data"
    assert cli.main(["simulate", *WORLD, "--output", str(logs)]) == 0
    assert cli.main(["preprocess", "--input", str(logs / "*.jsonl.gz"), "--output", str(data)]) == 0
    exported = {}
    for variant in ("naive", "pal"):
        model_dir = tmp_path / variant
        assert cli.main(["train", "--data", str(data), "--model-dir", str(model_dir), "--variant", variant,
                         *TRAIN]) == 0
        exported[variant] = export.export(str(model_dir), str(tmp_path / f"serving_{variant}"))["export_dir"]
    judged = {v: evaluate.evaluate(str(data), saved_model=d, split=JUDGED)["judged"]["ndcg@10"]
              for v, d in exported.items()}
    assert judged["naive"] < judged["pal"] - 0.01, judged  # the world's verdict, from true grades

    clicks_only = tmp_path / "clicks_only"
    shutil.copytree(data, clicks_only, ignore=shutil.ignore_patterns(JUDGED))
    assert validate.default_metric(str(clicks_only)) == "ips-ndcg@10"
    refused = validate.validate(exported["naive"], exported["pal"], str(clicks_only), min_ndcg=0.0,
                                max_regression=0.0)
    assert not refused["blessed"], refused["reason"]
    assert refused["change"]["verdict"] == "worse" and refused["change"]["ci95"][1] < 0
    assert refused["propensity_source"] == "truth" and os.path.exists(os.path.join(exported["naive"], "NOT_BLESSED"))
    blessed = validate.validate(exported["pal"], exported["naive"], str(clicks_only), min_ndcg=0.0,
                                max_regression=0.0)
    assert blessed["blessed"], blessed["reason"]
    # Harvested propensities (no truth.json): the same verdict from the logs alone.
    os.remove(clicks_only / "truth.json")
    harvested = validate.validate(exported["naive"], exported["pal"], str(clicks_only), min_ndcg=0.0,
                                  max_regression=0.0)
    assert harvested["propensity_source"] == "harvested" and not harvested["blessed"], harvested["reason"]
