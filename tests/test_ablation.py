"""`ranker ablation`: arm parsing, data routing, intervals, and a small real run writing the report."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from ranker import ablation
from ranker.errors import RankerError


def test_parse_arm_with_overrides():
    arm = ablation.parse_arm("pal:bias-dropout=0.5:loss=listwise")
    assert arm.variant == "pal" and not arm.is_tree
    assert arm.train_kwargs(3) == {"variant": "pal", "epochs": 3, "bias_dropout": 0.5, "loss": "listwise"}
    assert arm.train_kwargs() == {"variant": "pal", "bias_dropout": 0.5, "loss": "listwise"}
    routed = ablation.parse_arm("oracle:train-data=/d/oracle:split=judged")
    assert routed.option("train-data") == "/d/oracle"
    assert routed.train_kwargs() == {"variant": "oracle", "split": "judged"}  # not a train() kwarg
    assert ablation.parse_arm("lightgbm-position").is_tree
    for bad in ("magic", "pal:bias-dropout", "pal:colour=red", "pal:bias-dropout=high", "xgboost:epochs=2"):
        with pytest.raises(RankerError):
            ablation.parse_arm(bad)


def test_mean_std_skips_missing_values():
    assert ablation.mean_std([0.5, None, 0.7]) == {"mean": 0.6, "std": 0.1, "n": 2}


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
def test_ablation_writes_report_with_intervals_and_plots(tiny_data, tmp_path):
    arms = ["naive", "additive", "naive:learning-rate=0.01"]
    out = ablation.run_ablation(tiny_data, arms, seeds=2, output_dir=str(tmp_path), epochs=1,
                                gap_reference="naive:learning-rate=0.01")
    report = json.loads((tmp_path / "report.json").read_text())
    result = next(iter(report["datasets"].values()))
    assert set(result["arms"]) == set(arms) and result["lists"] == 40
    additive = result["arms"]["additive"]
    lo, hi = additive["judged_ndcg@10"]["ci95"]
    assert lo <= additive["judged_ndcg@10"]["mean"] <= hi
    assert additive["vs_naive"]["verdict"] in ("better", "worse", "no difference")
    assert "propensity_mean" in additive and "propensity_mean" not in result["arms"]["naive"]
    md = (tmp_path / "report.md").read_text()
    assert "| additive |" in md and "None" not in md
    assert len(out["plots"]) == 2 and all((tmp_path / p.split("/")[-1]).stat().st_size > 5000
                                          for p in out["plots"])
    # finished runs are reused: a second call trains nothing and gives the same figures
    again = ablation.run_ablation(tiny_data, arms, seeds=2, output_dir=str(tmp_path), epochs=1)
    assert again["judged_ndcg@10"] == out["judged_ndcg@10"]


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
def test_ablation_on_click_logs_alone_reports_ips_and_no_empty_chart(tiny_data, tmp_path):
    clicks_only = tmp_path / "clicks_only"
    shutil.copytree(tiny_data, clicks_only, ignore=shutil.ignore_patterns("judged"))
    out = ablation.run_ablation(str(clicks_only), ["naive", "pal"], seeds=1, output_dir=str(tmp_path / "r"),
                                epochs=1)
    result = json.loads((tmp_path / "r" / "report.json").read_text())["datasets"]["clicks_only"]
    assert result["lists"] == 0 and result["arms"]["pal"]["judged_ndcg@10"]["mean"] is None
    ips = result["arms"]["pal"]["ips_ndcg@10"]
    assert ips["ci95"][0] <= ips["mean"] <= ips["ci95"][1] and ips["n"] > 0
    assert result["arms"]["pal"]["ips_vs_naive"]["verdict"] in ("better", "worse", "no difference")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "None" not in md and "no judged lists: IPS click nDCG@10" in md
    assert f"| {ips['mean']:.3f} [" in md
    assert all(os.path.getsize(p) > 5000 for p in out["plots"])
    # without truth.json (and no harvested estimate) there are no propensities: click log-loss
    os.remove(clicks_only / "truth.json")
    ablation.run_ablation(str(clicks_only), ["naive"], seeds=1, output_dir=str(tmp_path / "r2"), epochs=1)
    md = (tmp_path / "r2" / "report.md").read_text()
    assert "None" not in md and "click logs without a simulation's truth.json" in md


def test_ablation_refuses_an_unknown_gap_reference(tiny_data, tmp_path):
    with pytest.raises(RankerError, match="gap-reference"):
        ablation.run_ablation(tiny_data, ["naive"], seeds=1, output_dir=str(tmp_path),
                              gap_reference="oracle")
