"""ranker.artifacts: the JSON helpers every stage reads and writes its files with."""
from __future__ import annotations

import json
import os

import pytest

from ranker import artifacts
from ranker.errors import RankerError


def test_read_json_gives_the_default_for_a_missing_file(tmp_path):
    assert artifacts.read_json(str(tmp_path / "absent.json")) is None
    assert artifacts.read_json(str(tmp_path / "absent.json"), {}) == {}


def test_read_json_refuses_a_file_that_is_not_json(tmp_path):
    path = tmp_path / artifacts.STATS_FILE
    path.write_text("{ truncated")
    with pytest.raises(RankerError, match=f"{artifacts.STATS_FILE}: not valid JSON"):
        artifacts.read_json(str(path))


def test_write_json_round_trips_and_leaves_no_temporary_file(tmp_path):
    obj = {"request": 'q"1\\', "values": [1, 2.5, None], "nested": {"ü": True}}
    path = artifacts.write_json(str(tmp_path / artifacts.METRICS_FILE), obj)
    assert artifacts.read_json(path) == obj
    assert json.loads(open(path).read()) == obj and open(path).read().endswith("\n")
    assert os.listdir(tmp_path) == [artifacts.METRICS_FILE]


def test_write_json_refuses_nan_and_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / artifacts.TRAIN_SUMMARY)
    artifacts.write_json(path, {"loss": 0.5})
    with pytest.raises(RankerError, match="cannot write as JSON"):
        artifacts.write_json(path, {"loss": float("nan")})
    assert artifacts.read_json(path) == {"loss": 0.5}
    assert os.listdir(tmp_path) == [artifacts.TRAIN_SUMMARY]


def test_saved_model_file_names_the_folder_that_lacks_one(tmp_path):
    with pytest.raises(RankerError, match=f"{tmp_path}: no {artifacts.SAVED_MODEL_FILE}"):
        artifacts.saved_model_file(str(tmp_path))
    (tmp_path / artifacts.SAVED_MODEL_FILE).write_bytes(b"")
    assert artifacts.saved_model_file(str(tmp_path)) == str(tmp_path / artifacts.SAVED_MODEL_FILE)


def test_split_files_lists_only_record_files_sorted(tmp_path):
    split = tmp_path / artifacts.TRAIN
    split.mkdir()
    parts = [f"part-0000{i}-of-00002{artifacts.RECORD_SUFFIX}" for i in (0, 1)]
    for name in (parts[1], parts[0], "notes.txt"):
        (split / name).write_bytes(b"")
    assert [os.path.basename(f) for f in artifacts.split_files(str(tmp_path), artifacts.TRAIN)] == parts
    assert artifacts.split_files(str(tmp_path), artifacts.EVAL) == []
