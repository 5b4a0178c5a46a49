"""The whole pipeline through the CLI on a small synthetic world: simulate → preprocess (Beam) →
train → evaluate → export → validate → push. Slow (about a minute); `-m "not slow"` skips it."""
from __future__ import annotations

import json
import os

import pytest
import tensorflow as tf

from ranker.cli import main
from ranker.workflow import DEBIASED

pytestmark = pytest.mark.slow


def test_ranker_run_end_to_end(tmp_path, capsys):
    workdir = tmp_path / "work"
    code = main(["run", "--workdir", str(workdir), "--num-queries", "150", "--sessions-per-query", "20",
                 "--epochs", "3", "--min-ndcg", "0.5"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["blessed"] and summary["pushed"].endswith(os.path.join("serving", "ranker", "1"))
    stats = json.loads((workdir / "data" / "stats.json").read_text())
    assert stats["lines_read"] == (stats["impressions_valid"] + stats["dead_letter"]["total"]
                                   + stats["truncated_impressions"])
    assert stats["requests"]["judged"] > 0 and stats["requests"]["train"] > stats["requests"]["eval"]
    from ranker.models import data  # steps per epoch come from these counts: they must match the files
    for split in ("train", "eval", "judged"):
        assert data.num_lists(str(workdir / "data"), split) == data.count_lists(str(workdir / "data"), split)
    for variant in ("naive", DEBIASED):
        metrics = json.loads((workdir / "models" / variant / "metrics.json").read_text())
        assert metrics["judged"]["ndcg@10"] > 0.5 and metrics["clicks"]["auc"] > 0.6
    metrics = json.loads((workdir / "models" / DEBIASED / "metrics.json").read_text())
    assert set(metrics["propensity"]) == {"desktop", "mobile", "tablet"}
    # the pushed SavedModel serves serialized tf.Examples without position or device
    loaded = tf.saved_model.load(summary["pushed"])
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"examples"}
    # a second run validates against the pushed version and pushes version 2 when not worse
    code = main(["run", "--workdir", str(workdir), "--num-queries", "150", "--sessions-per-query", "20",
                 "--epochs", "3", "--min-ndcg", "0.5"])
    second = json.loads(capsys.readouterr().out)
    # same seed, same data, retrained from scratch: the same model, so not worse, and blessed
    assert code == 0 and second["blessed"]
    assert second["pushed"].endswith(os.path.join("serving", "ranker", "2"))
    verdict = json.loads(open(os.path.join(second["export_dir"], "BLESSED")).read())
    assert verdict["baseline"] == summary["pushed"]
