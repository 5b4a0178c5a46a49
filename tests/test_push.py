"""push.py and the serving image's blessed-only copy (select_blessed.sh, the Dockerfile)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from serving_helpers import config_entries

from ranker.errors import RankerError
from ranker.serving import publish, push, validate, verdict

REPO = Path(__file__).resolve().parents[1]
SELECT_BLESSED = REPO / "ranker" / "serving" / "select_blessed.sh"


# --- push and the serving image ---------------------------------------------------------------

def test_push_copies_only_blessed_versions_into_the_serving_base(exported, tiny_data, tmp_path):
    staged = tmp_path / "staging" / "ranker"
    shutil.copytree(exported["export_dir"], staged / "1",
                    ignore=shutil.ignore_patterns(verdict.BLESSED, verdict.NOT_BLESSED))
    serving_base = str(tmp_path / "serving" / "ranker")
    with pytest.raises(RankerError, match="not blessed"):
        push.push(str(staged / "1"), serving_base)
    assert push.last_pushed(serving_base) is None
    result = validate.validate(str(staged / "1"), None, tiny_data, min_ndcg=0.0, max_regression=0.01)
    assert result["blessed"]
    pushed = push.push(str(staged / "1"), serving_base)
    assert pushed["version"] == 1 and push.last_pushed(serving_base) == os.path.join(serving_base, "1")
    assert sorted(os.listdir(serving_base)) == ["1", "batching_parameters.txt", "models.config"]
    assert config_entries(pushed["models_config"]) == [("ranker", "/models/ranker")]
    assert os.path.dirname(pushed["models_config"]) == serving_base
    with open(os.path.join(serving_base, "1", "saved_model.pb"), "rb") as copy, \
            open(os.path.join(exported["export_dir"], "saved_model.pb"), "rb") as original:
        assert copy.read() == original.read()  # the pushed copy is the same model
    verdict.check_blessed(os.path.join(serving_base, "1"))  # its verdict still matches the copy


def test_push_refuses_a_verdict_for_another_model(exported, tiny_data, tmp_path):
    staged = tmp_path / "ranker" / "1"
    shutil.copytree(exported["export_dir"], staged)
    validate.validate(os.fspath(staged), None, tiny_data, min_ndcg=0.0)
    serving_base = os.fspath(tmp_path / "serving" / "ranker")
    with open(staged / "saved_model.pb", "ab") as fh:  # the model changed after validation
        fh.write(b"\0")
    with pytest.raises(RankerError, match="fingerprint mismatch"):
        push.push(os.fspath(staged), serving_base)
    judged = json.loads((staged / "BLESSED").read_text())
    judged["fingerprint"] = verdict.fingerprint(os.fspath(staged))
    judged["blessed"] = False  # a BLESSED file that does not say blessed
    (staged / "BLESSED").write_text(json.dumps(judged))
    with pytest.raises(RankerError, match="does not say blessed"):
        push.push(os.fspath(staged), serving_base)
    (staged / "BLESSED").write_text("{ truncated")
    with pytest.raises(RankerError, match="not valid JSON"):
        push.push(os.fspath(staged), serving_base)
    assert publish.versions(serving_base) == []


def _fake_version(base: Path, version: int, blessed: bool | None, tamper: bool = False) -> None:
    folder = base / str(version)
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(f"model {version}".encode())
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "assets").mkdir()
    (folder / "assets" / "category.txt").write_text("x\ny\n")
    if blessed is not None:
        verdict.write_verdict(os.fspath(folder), {"blessed": blessed,
                                                  "fingerprint": verdict.fingerprint(os.fspath(folder))})
    if tamper:
        (folder / "variables" / "variables.index").write_bytes(b"other weights")


def test_serving_image_selects_only_blessed_versions(tmp_path):
    base, out = tmp_path / "serving" / "ranker", tmp_path / "image"
    _fake_version(base, 1, blessed=True)
    _fake_version(base, 2, blessed=False)
    _fake_version(base, 3, blessed=None)
    _fake_version(base, 4, blessed=True, tamper=True)
    _fake_version(base, 5, blessed=True)
    (base / ".tmp-abc").mkdir()
    (base / "models.config").write_text("model_config_list {}\n")
    run = subprocess.run(["sh", os.fspath(SELECT_BLESSED), os.fspath(base), os.fspath(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == ["1", "5"]
    assert sorted(os.listdir(out / "1")) == ["BLESSED", "assets", "saved_model.pb", "variables"]
    nothing = subprocess.run(["sh", os.fspath(SELECT_BLESSED), os.fspath(base / "2"),
                              os.fspath(tmp_path / "x")], capture_output=True, text=True)
    assert nothing.returncode != 0 and "no blessed version" in nothing.stderr
    dockerfile = (REPO / "Dockerfile").read_text()
    serving_stage = dockerfile[dockerfile.index("AS serving"):]
    assert "COPY --from=blessed" in serving_stage and "MODEL_BASE" not in serving_stage
    assert "select_blessed.sh" in dockerfile[dockerfile.index("AS blessed"):dockerfile.index("AS serving")]
