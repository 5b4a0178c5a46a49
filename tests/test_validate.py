"""The CI gate (validate.py): judged, IPS and click-log-loss metrics, the decision rule, one-line
errors, verdicts. Reuses the test run's exported good model, copied into a base of its own (these
tests write verdicts); one bad model (learning rate ~0) is trained here."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from ranker import cli
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import evaluate, train
from ranker.serving import export, publish, push, validate, verdict


@pytest.fixture(scope="module")
def bad_export(tiny_data, tmp_path_factory):
    """A randomly initialised model (learning rate ~0), exported: scores are noise."""
    root = tmp_path_factory.mktemp("bad")
    train.train(tiny_data, os.fspath(root / "model"), variant="naive", epochs=1,
                learning_rate=1e-12, verbose=0)
    return export.export(os.fspath(root / "model"), os.fspath(root / "staging" / "ranker"))


def _other_spec_data(tiny_data: str, root: Path) -> str:
    """tiny_data with one feature renamed in its spec: data of another spec."""
    data_dir = root / "other_spec"
    shutil.copytree(tiny_data, data_dir)
    spec = json.loads((data_dir / fs.SPEC_FILENAME).read_text())
    for feature in spec["item"]:
        if feature["name"] == "price":
            feature["name"] = "cost"
    (data_dir / fs.SPEC_FILENAME).write_text(json.dumps(spec))
    return os.fspath(data_dir)


# --- the CI gate ------------------------------------------------------------------------------

def test_validate_blesses_good_and_refuses_bad(exported, bad_export, tiny_data):
    good, bad = exported["export_dir"], bad_export["export_dir"]
    first = validate.validate(good, None, tiny_data, min_ndcg=0.6, max_regression=0.01)
    assert first["blessed"] and first["baseline_value"] is None and "no baseline" in first["reason"]
    judged = json.loads(open(os.path.join(good, "BLESSED")).read())
    assert judged["blessed"] and judged["metric"] == "judged-ndcg@10" and judged["higher_is_better"]
    assert judged["fingerprint"] == verdict.fingerprint(good)
    assert not os.path.exists(os.path.join(good, "NOT_BLESSED"))

    against = validate.validate(bad, good, tiny_data, min_ndcg=0.0, max_regression=0.01)
    good_ndcg, bad_ndcg = against["baseline_value"], against["candidate_value"]
    assert good_ndcg == pytest.approx(first["candidate_value"])
    assert good_ndcg > bad_ndcg + 0.1, (good_ndcg, bad_ndcg)  # random scores are far worse
    assert not against["blessed"] and "regresses" in against["reason"]
    assert os.path.exists(os.path.join(bad, "NOT_BLESSED"))
    assert not os.path.exists(os.path.join(bad, "BLESSED"))
    assert publish.versions(os.path.dirname(bad)) == [1]  # verdict files are not versions

    floor = round((good_ndcg + bad_ndcg) / 2, 3)
    floor_only = validate.validate(bad, None, tiny_data, min_ndcg=floor, max_regression=0.01)
    assert not floor_only["blessed"] and "floor" in floor_only["reason"]

    code = cli.main(["validate", "--candidate", good, "--data", tiny_data, "--min-ndcg", str(floor)])
    assert code == 0 and os.path.exists(os.path.join(good, "BLESSED"))
    code = cli.main(["validate", "--candidate", bad, "--baseline", good, "--data", tiny_data,
                     "--min-ndcg", "0", "--max-regression", "0.01"])
    assert code == 1


def test_decide_rules():
    assert validate.decide(0.8, None, 0.5, 0.01)[0]
    assert not validate.decide(0.4, None, 0.5, 0.01)[0]
    assert validate.decide(0.795, 0.8, 0.5, 0.01)[0]
    assert not validate.decide(0.78, 0.8, 0.5, 0.01)[0]
    assert not validate.decide(float("nan"), None, 0.0, 0.01)[0]
    # lower is better (click-log-loss): the regression flips sign, the bound is a ceiling
    assert validate.decide(0.305, 0.3, None, 0.01, higher_is_better=False)[0]
    assert not validate.decide(0.32, 0.3, None, 0.01, higher_is_better=False)[0]
    assert validate.decide(0.2, 0.3, None, 0.01, higher_is_better=False)[0]
    assert not validate.decide(0.5, None, 0.4, 0.01, higher_is_better=False)[0]
    assert "ceiling" in validate.decide(0.5, None, 0.4, 0.01, higher_is_better=False, metric="x")[1]


def test_decide_blocks_only_a_regression_beyond_its_interval():
    # 0.02 worse than the baseline, more than the 0.01 allowed:
    noisy, reason = validate.decide(0.78, 0.80, 0.5, 0.01, interval=[-0.05, 0.01])
    assert noisy and "not beyond the noise" in reason and "[-0.0500, +0.0100]" in reason
    real, reason = validate.decide(0.78, 0.80, 0.5, 0.01, interval=[-0.03, -0.011])
    assert not real and "regresses" in reason
    # within the allowed regression, even when it is beyond its interval
    assert validate.decide(0.795, 0.80, 0.5, 0.01, interval=[-0.006, -0.004])[0]
    # lower is better: the interval is of the improvement (> 0 better)
    assert not validate.decide(0.33, 0.30, None, 0.01, higher_is_better=False, interval=[-0.04, -0.02])[0]


def test_ips_metric_gate(exported, bad_export, tiny_data, tmp_path):
    good, bad = exported["export_dir"], bad_export["export_dir"]
    result = validate.validate(good, None, tiny_data, metric="ips-ndcg@10", min_ndcg=0.0)
    want = evaluate.evaluate(tiny_data, saved_model=good, split="eval")
    assert result["blessed"] and result["candidate_value"] == pytest.approx(want["ips"]["ndcg@10"])
    recorded = json.loads(open(result["verdict_file"]).read())
    assert recorded["propensity_source"] == "truth" and recorded["metric"] == "ips-ndcg@10"
    assert set(recorded["by_device"]) == set(want["ips_by_device"]) and len(recorded["by_device"]) > 1
    against = validate.validate(bad, good, tiny_data, metric="ips-ndcg@10", min_ndcg=0.0)
    # random scores against the trained model: worse, beyond the paired interval, and refused
    assert against["change"]["lists"] > 0 and against["change"]["verdict"] == "worse"
    assert against["change"]["ci95"][1] < 0 and not against["blessed"]
    assert against["change"]["diff"] == pytest.approx(against["candidate_value"] - against["baseline_value"], abs=1e-3)
    device = sorted(recorded["by_device"])[0]
    floored = validate.validate(good, None, tiny_data, metric="ips-ndcg@10", min_ndcg=0.0,
                                device_floor={device: 1.0})
    assert not floored["blessed"] and f"below the device floor: {device}" in floored["reason"]
    with pytest.raises(RankerError, match="no eval lists of device"):
        validate.validate(good, None, tiny_data, metric="ips-ndcg@10", device_floor={"fridge": 0.1})
    with pytest.raises(RankerError, match="--device-floor needs"):
        validate.validate(good, None, tiny_data, metric="judged-ndcg@10", device_floor={device: 0.1})
    assert cli.main(["validate", "--candidate", good, "--data", tiny_data, "--metric", "ips-ndcg@10",
                     "--device-floor", "mobile"]) == 2
    missing = tmp_path / "no_truth"
    shutil.copytree(tiny_data, missing, ignore=shutil.ignore_patterns("truth.json", "propensity_harvested.json"))
    with pytest.raises(RankerError, match="no truth.json and no usable harvested"):
        validate.validate(good, None, os.fspath(missing), metric="ips-ndcg@10")


def test_click_log_loss_metric(exported, tiny_data, tmp_path):
    good = exported["export_dir"]
    result = validate.validate(good, None, tiny_data, metric="click-log-loss", max_regression=0.01)
    want = evaluate.evaluate(tiny_data, saved_model=good, split="eval")["clicks"]["log_loss"]
    assert result["metric"] == "click-log-loss" and result["higher_is_better"] is False
    assert result["candidate_value"] == pytest.approx(want) and result["blessed"]
    recorded = json.loads(open(result["verdict_file"]).read())
    assert recorded["metric"] == "click-log-loss" and recorded["max_log_loss"] is None
    ceiling = validate.validate(good, None, tiny_data, metric="click-log-loss", max_log_loss=want / 2)
    assert not ceiling["blessed"] and "ceiling" in ceiling["reason"]
    with pytest.raises(RankerError, match="--min-ndcg"):
        validate.validate(good, None, tiny_data, min_ndcg=0.5, metric="click-log-loss")
    with pytest.raises(RankerError, match="--max-log-loss"):
        validate.validate(good, None, tiny_data, max_log_loss=0.5, metric="judged-ndcg@10")
    with pytest.raises(RankerError, match="ips-ndcg@11"):
        validate.validate(good, None, tiny_data, metric="ips-ndcg@11")
    assert cli.main(["validate", "--candidate", good, "--data", tiny_data, "--metric", "click-log-loss",
                     "--min-ndcg", "0.5"]) == 2
    no_judged = tmp_path / "no_judged"
    shutil.copytree(tiny_data, no_judged, ignore=shutil.ignore_patterns("judged"))
    assert validate.default_metric(os.fspath(no_judged)) == "ips-ndcg@10"
    assert validate.default_metric(tiny_data) == "judged-ndcg@10"


def test_validate_rejects_a_folder_that_is_not_an_export(tiny_data, tmp_path):
    with pytest.raises(RankerError, match="saved_model.pb"):
        validate.validate(os.fspath(tmp_path), None, tiny_data, min_ndcg=0.5, max_regression=0.01)


def test_foreign_saved_model_and_other_spec_are_one_line_errors(exported, tiny_data, tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x * 2}, input_signature=[tf.TensorSpec([None], tf.float32)])
    foreign = os.fspath(tmp_path / "foreign")
    tf.saved_model.save(module, foreign, signatures={"serving_default": module.f})
    with pytest.raises(RankerError, match="not a `ranker export`") as err:
        validate.validate(foreign, None, tiny_data)
    assert "\n" not in str(err.value)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"\x07 not a protobuf")
    with pytest.raises(RankerError, match="SavedModel"):
        validate.validate(os.fspath(tmp_path / "broken"), None, tiny_data)
    other = _other_spec_data(tiny_data, tmp_path)
    with pytest.raises(RankerError, match="another feature spec.*cost.*price") as err:
        validate.validate(exported["export_dir"], None, other)
    assert "\n" not in str(err.value)


def test_a_failed_revalidation_leaves_no_stale_blessed(exported, tiny_data, tmp_path):
    staged = tmp_path / "staging" / "ranker" / "1"
    shutil.copytree(exported["export_dir"], staged)
    assert validate.validate(os.fspath(staged), None, tiny_data, min_ndcg=0.0)["blessed"]
    assert (staged / "BLESSED").exists()
    with pytest.raises(RankerError):
        validate.validate(os.fspath(staged), None, _other_spec_data(tiny_data, tmp_path))
    assert not (staged / "BLESSED").exists() and not (staged / "NOT_BLESSED").exists()
    with pytest.raises(RankerError, match="not blessed"):
        push.push(os.fspath(staged), os.fspath(tmp_path / "serving" / "ranker"))
