"""Hostile input to `ranker train`: changed flags or other data on resume (and --restart), an
unfinished or empty preprocess output, out-of-range flags, a diverging training, corrupt or
non-finite checkpoints, and what the loss history reports."""
from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import conftest
from ranker import artifacts
from ranker.cli import main
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import checkpoints, data, schedule, train as train_module
from ranker.models.config import ModelConfig
from ranker.models.train import CHECKPOINT_DIR, load_trained, train


@pytest.fixture(scope="module")
def naive_dir(tiny_data, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("naive") / "m")
    summary = train(tiny_data, model_dir, variant="naive", epochs=1, verbose=0)
    return model_dir, summary


def _copy(source: str, target) -> str:
    return str(shutil.copytree(source, target))


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --- 1. resume refuses changed flags; --restart -------------------------------------------------

def test_resume_refuses_changed_flags_naming_each(naive_dir, tiny_data, tmp_path):
    model_dir = _copy(naive_dir[0], tmp_path / "m")
    with pytest.raises(RankerError) as err:
        train(tiny_data, model_dir, variant="naive", epochs=2, learning_rate=0.1, batch_size=32,
              position_dropout=0.5, verbose=0)
    message = _one_line(err)
    for part in ("--learning-rate 0.003 (now 0.1)", "--batch-size 128 (now 32)",
                 "--position-dropout 0.1 (now 0.5)", "--restart", "--model-dir"):
        assert part in message
    for changed, flag in [({"variant": "additive"}, "--variant 'naive' (now 'additive')"),
                          ({"loss": "listwise"}, "--loss"), ({"hidden_units": (16,)}, "--hidden-units"),
                          ({"seed": 7}, "--seed 0 (now 7)"), ({"dnn_dropout": 0.2}, "--dnn-dropout")]:
        options = {"variant": "naive", **changed}
        with pytest.raises(RankerError) as err:
            train(tiny_data, model_dir, epochs=2, verbose=0, **options)
        assert flag in _one_line(err)
    assert ModelConfig.load(model_dir).learning_rate == pytest.approx(3e-3)  # nothing was changed
    assert len(tf.train.get_checkpoint_state(os.path.join(model_dir, CHECKPOINT_DIR)).all_model_checkpoint_paths) == 1


def test_resume_takes_a_new_epoch_budget(naive_dir, tiny_data, tmp_path):
    model_dir = _copy(naive_dir[0], tmp_path / "m")
    summary = train(tiny_data, model_dir, variant="naive", epochs=1, patience=1, min_steps=10, verbose=0)
    assert summary["resumed_from_epoch"] == 1 and summary["history"] == {}  # nothing left to train
    config = ModelConfig.load(model_dir)
    assert (config.patience, config.min_steps, config.epochs) == (1, 10, 1)


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
def test_restart_through_the_cli_trains_afresh_and_keeps_other_files(naive_dir, tiny_data, tmp_path, capsys):
    model_dir = _copy(naive_dir[0], tmp_path / "m")
    (tmp_path / "m" / "notes.txt").write_text("mine")
    base = ["train", "--data", tiny_data, "--model-dir", model_dir, "--variant", "naive", "--epochs", "1"]
    assert main(base + ["--learning-rate", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--learning-rate 0.003 (now 0.01)" in err and "--restart" in err
    assert main(base + ["--learning-rate", "0.01", "--restart"]) == 0
    summary = json.loads((tmp_path / "m" / artifacts.TRAIN_SUMMARY).read_text())
    assert summary["resumed_from_epoch"] == 0 and summary["epochs_trained"] == 1
    assert ModelConfig.load(model_dir).learning_rate == 0.01
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    assert main(base + ["--learning-rate", "0.01"]) == 0  # the CLI's defaults resume cleanly


# --- 2. resume refuses other data ------------------------------------------------------------

def test_resume_refuses_other_data(naive_dir, tiny_data, tmp_path):
    model_dir = _copy(naive_dir[0], tmp_path / "m")
    assert ModelConfig.load(model_dir).data_fingerprint["lists"]["train"] == 600
    other = conftest.write_tiny_data(tmp_path / "other", n_train=300, seed=1)
    with pytest.raises(RankerError) as err:
        train(str(other), model_dir, variant="naive", epochs=2, verbose=0)
    message = _one_line(err)
    assert "trained on other data" in message and "lists per split" in message and "--restart" in message
    same_counts = _copy(tiny_data, tmp_path / "same_counts")
    stats_path = tmp_path / "same_counts" / artifacts.STATS_FILE
    stats = json.loads(stats_path.read_text())
    stats["ctr_by_position_device"]["mobile"]["1"] = 0.5
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(RankerError, match="other click statistics"):
        train(same_counts, model_dir, variant="naive", epochs=2, verbose=0)


def _without_feature(tiny_data: str, target, name: str) -> str:
    folder = _copy(tiny_data, target)
    path = os.path.join(folder, fs.SPEC_FILENAME)
    spec = json.load(open(path))
    spec["item"] = [f for f in spec["item"] if f["name"] != name]
    with open(path, "w") as fh:
        json.dump(spec, fh)
    return folder


def test_resume_on_data_lacking_a_feature_names_it(naive_dir, tiny_data, tmp_path):
    model_dir = _copy(naive_dir[0], tmp_path / "m")
    lacking = _without_feature(tiny_data, tmp_path / "d", "price")
    with pytest.raises(RankerError, match=r"lacks feature\(s\) \['price'\]"):
        train(lacking, model_dir, variant="naive", epochs=2, verbose=0)


# --- 3. unfinished or empty preprocess output -------------------------------------------------

def test_unfinished_or_empty_preprocess_output_is_refused(tiny_data, tmp_path, capsys):
    killed = _copy(tiny_data, tmp_path / "killed")
    os.remove(os.path.join(killed, artifacts.STATS_FILE))
    assert main(["train", "--data", killed, "--model-dir", str(tmp_path / "m1"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"no {artifacts.STATS_FILE}" in err
    empty = _copy(tiny_data, tmp_path / "empty")
    shard = os.path.join(empty, "train", "part-00000-of-00001.tfrecord.gz")
    with tf.io.TFRecordWriter(shard, options="GZIP"):
        pass  # no records
    with pytest.raises(RankerError) as err:
        train(empty, str(tmp_path / "m2"), variant="naive", epochs=1, verbose=0)
    assert "holds no lists" in _one_line(err)


# --- 4. numeric flags and divergence ----------------------------------------------------------

@pytest.mark.parametrize("field,value,flag", [
    ("learning_rate", -1.0, "--learning-rate"), ("learning_rate", 0.0, "--learning-rate"),
    ("learning_rate", 1e30, "--learning-rate"), ("learning_rate", float("nan"), "--learning-rate"),
    ("learning_rate", float("inf"), "--learning-rate"), ("bias_learning_rate", 2.0, "--bias-learning-rate"),
    ("batch_size", 0, "--batch-size"), ("batch_size", 2.5, "--batch-size"), ("epochs", 0, "--epochs"),
    ("min_steps", 0, "--min-steps"), ("patience", -1, "--patience"), ("ips_clip", 0.5, "--ips-clip"),
    ("ips_clip", float("inf"), "--ips-clip"), ("ips_clip", float("nan"), "--ips-clip"),
    ("seed", -1, "--seed"), ("seed", 2**40, "--seed"), ("num_positions", 0, "--num-positions"),
    ("position_dropout", float("nan"), "--position-dropout"), ("dnn_dropout", 1.0, "--dnn-dropout"),
])
def test_numeric_flags_are_range_checked(field, value, flag):
    with pytest.raises(RankerError, match=flag):
        ModelConfig(**{field: value})


def test_range_errors_come_before_training(tiny_data, tmp_path, capsys):
    ModelConfig(learning_rate=1.0, bias_learning_rate=1.0, ips_clip=1.0, patience=0, min_steps=1)
    for flag, value in [("--learning-rate", "-1"), ("--learning-rate", "1e30"), ("--batch-size", "0")]:
        assert main(["train", "--data", tiny_data, "--model-dir", str(tmp_path / "m"), flag, value]) == 2
        assert flag in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    with pytest.raises(RankerError, match="--backup-every"):
        train(tiny_data, str(tmp_path / "m"), variant="naive", backup_every=-1)


def _with_nan_prices(tmp_path, first: int) -> str:
    """Tiny data whose lists from `first` on have a NaN price."""
    root = conftest.write_tiny_data(tmp_path / "nan")
    spec = fs.parse_spec(conftest.TINY_SPEC)

    def lists():
        for i, impressions in enumerate(conftest._lists(np.random.default_rng(1), 600, 6, False)):
            if i >= first:
                impressions[0]["features"]["price"] = float("nan")
            yield impressions

    conftest._write(root / "train" / "part-00000-of-00001.tfrecord.gz", lists(), spec)
    return str(root)


def test_a_diverging_training_fails_and_checkpoints_nothing(tmp_path):
    # moments are read from the first 50 batches of 8 lists: the NaN prices come later
    nan_data = _with_nan_prices(tmp_path, first=500)
    model_dir = tmp_path / "m"
    with pytest.raises(RankerError) as err:
        train(nan_data, str(model_dir), variant="naive", epochs=1, batch_size=8, verbose=0)
    assert "training diverged: loss nan" in _one_line(err)
    assert not (model_dir / artifacts.TRAIN_SUMMARY).exists()
    assert tf.train.latest_checkpoint(str(model_dir / CHECKPOINT_DIR)) is None
    assert not (model_dir / checkpoints.BEST_DIR).exists()


def test_non_finite_values_in_the_moment_sample_are_refused_up_front(tmp_path):
    with pytest.raises(RankerError, match=r"\['price'\] hold NaN"):
        train(_with_nan_prices(tmp_path, first=0), str(tmp_path / "m"), variant="naive", epochs=1, verbose=0)


def test_finite_guard_checks_weights_after_each_epoch():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    guard = checkpoints.FiniteGuard()
    guard.set_model(model)
    guard.on_train_batch_end(0, {"loss": tf.constant(0.5)})
    guard.on_epoch_end(0)
    with pytest.raises(checkpoints.Diverged, match="loss inf in epoch 1, batch 4"):
        guard.on_train_batch_end(3, {"loss": tf.constant(np.inf)})
    model.layers[0].kernel.assign([[np.nan], [0.0]])
    with pytest.raises(checkpoints.Diverged, match="weights not finite after epoch 2"):
        guard.on_epoch_end(1)


# --- corrupt checkpoints ---------------------------------------------------------------------

def test_nan_checkpoint_is_refused(tmp_path):
    path = tf.train.Checkpoint(v=tf.Variable([1.0, np.nan])).save(str(tmp_path / "ckpt"))
    with pytest.raises(RankerError, match="NaN or infinite"):
        checkpoints.check_checkpoint(path)


def test_truncated_checkpoint_is_one_line_for_train_and_load(naive_dir, tiny_data, tmp_path):
    model_dir = _copy(naive_dir[0], tmp_path / "m")
    for folder, _, files in os.walk(model_dir):
        for name in files:
            if ".data-" in name:
                path = os.path.join(folder, name)
                os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(RankerError) as err:
        load_trained(model_dir)
    assert "corrupt or truncated checkpoint" in _one_line(err)
    with pytest.raises(RankerError, match="corrupt or truncated checkpoint"):
        train(tiny_data, model_dir, variant="naive", epochs=2, verbose=0)


# --- 5./7. what the history and the logs report ----------------------------------------------

def test_loss_history_is_the_epoch_mean_without_regularization_noise(naive_dir, tiny_data):
    assert set(naive_dir[1]["history"]) == {"loss", "click_log_loss", "val_loss", "val_click_log_loss"}
    spec = data.data_spec(tiny_data)
    config = ModelConfig(variant="naive", learning_rate=1e-9, lr_schedule="constant", steps_per_epoch=10)
    config.train_list_size = data.click_list_size(tiny_data, spec)
    model = schedule.build(config, spec)
    ds = data.dataset(tiny_data, "train", spec, config.train_list_size, 64)  # 10 batches, the last of 24
    per_batch = [float(model.compute_loss(batch, training=True)) for batch in ds]
    model.build_optimizers()
    assert not np.isclose(per_batch[-1], np.mean(per_batch), rtol=1e-3)  # the test can tell them apart
    history = model.fit(ds, epochs=1, verbose=0).history  # a rate of 1e-9 leaves the weights as they are
    assert set(history) == {"loss", "click_log_loss"}
    assert history["loss"][0] == pytest.approx(np.mean(per_batch), rel=1e-4)
    assert model.evaluate(ds, verbose=0, return_dict=True)["loss"] == pytest.approx(np.mean(per_batch), rel=1e-4)


def test_the_slow_callback_warning_is_filtered():
    quiet = train_module._QuietKeras()
    slow = logging.LogRecord("tensorflow", logging.WARNING, "", 0, "Callback method `on_train_batch_end` is "
                             "slow compared to the batch time (batch time: 0.0010s vs `on_train_batch_end`"
                             " time: 0.0200s). Check your callbacks.", None, None)
    other = logging.LogRecord("tensorflow", logging.WARNING, "", 0, "something else", None, None)
    assert not quiet.filter(slow) and quiet.filter(other)
