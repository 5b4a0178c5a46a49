"""`ranker ablation`: arm parsing, summaries, and a small real run writing the report and plots."""
from __future__ import annotations

import json

import pytest

from ranker import ablation
from ranker.errors import RankerError


def test_parse_arm_with_overrides():
    arm = ablation.parse_arm("pal:bias-dropout=0.5:loss=listwise")
    assert arm.variant == "pal"
    assert arm.train_kwargs(3) == {"variant": "pal", "epochs": 3, "bias_dropout": 0.5, "loss": "listwise"}
    for bad in ("magic", "pal:bias-dropout", "pal:colour=red", "pal:bias-dropout=high"):
        with pytest.raises(RankerError):
            ablation.parse_arm(bad)


def test_gap_recovered_is_share_of_naive_to_oracle():
    arms = {name: {"judged_ndcg@10": {"mean": v}} for name, v in
            {"naive": 0.6, "oracle": 0.8, "pal": 0.78, "additive": 0.7}.items()}
    assert ablation.gap_recovered(arms) == {"pal": 0.9, "additive": 0.5}


def test_mean_std_skips_missing_values():
    assert ablation.mean_std([0.5, None, 0.7]) == {"mean": 0.6, "std": 0.1, "n": 2}


def test_ablation_writes_report_and_plots(tiny_data, tmp_path):
    out = ablation.run_ablation(tiny_data, ["naive", "additive", "oracle"], seeds=2,
                                output_dir=str(tmp_path), epochs=1)
    report = json.loads((tmp_path / "report.json").read_text())
    arms = next(iter(report["datasets"].values()))["arms"]
    assert set(arms) == {"naive", "additive", "oracle"}
    assert arms["additive"]["judged_ndcg@10"]["n"] == 2
    assert "propensity_mean" in arms["additive"] and "propensity_mean" not in arms["naive"]
    md = (tmp_path / "report.md").read_text()
    assert "| additive |" in md
    assert len(out["plots"]) == 2 and all((tmp_path / p.split("/")[-1]).stat().st_size > 5000
                                          for p in out["plots"])
    # finished runs are reused: a second call trains nothing and gives the same figures
    again = ablation.run_ablation(tiny_data, ["naive", "additive", "oracle"], seeds=2,
                                  output_dir=str(tmp_path), epochs=1)
    assert again["judged_ndcg@10"] == out["judged_ndcg@10"]
