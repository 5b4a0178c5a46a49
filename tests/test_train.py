"""The training recipe: step budget, schedule, two optimizers, early stopping with best restore,
ips and dla, the propensity read-off and `--split`."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ranker import cli
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import checkpoints, data, dla, ips, schedule
from ranker.models.config import ModelConfig
from ranker.models.train import BEST_DIR, CHECKPOINT_DIR, build, check_split, load_trained, train


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def built_model(data_dir, **config):
    """An untrained model of `config` on `data_dir`'s spec, variables created."""
    spec = data.data_spec(data_dir)
    config = ModelConfig(**config)
    config.train_list_size = data.click_list_size(data_dir, spec)
    model = build(config, spec)
    batch = next(iter(data.dataset(data_dir, "train", spec, config.train_list_size, 16)))
    model(batch)
    model.build_optimizers()
    return model, batch


# --- step budget and schedule ---------------------------------------------------------------

def test_epochs_follow_the_step_budget_unless_given():
    assert schedule.plan_epochs(141, None, 2000) == 15  # ceil(2000 / 141)
    assert schedule.plan_epochs(16, None, 2000) == schedule.MAX_AUTO_EPOCHS  # 125, capped
    assert schedule.plan_epochs(10_000, None, 2000) == schedule.MIN_EPOCHS
    assert schedule.plan_epochs(16, 7, 2000) == 7
    with pytest.raises(RankerError, match="epochs"):
        schedule.plan_epochs(16, 0, 2000)


def test_warmup_then_cosine_decay():
    lr = schedule.WarmupCosine(peak=1.0, total=100, warmup=10, final_fraction=0.1)
    assert float(lr(0)) == pytest.approx(0.1)  # the first step: 1 / warmup of the peak
    assert float(lr(9)) == pytest.approx(1.0)  # warm-up done
    midway = 10 + (100 - 10) / 2 - 1
    assert float(lr(midway)) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-4)
    assert float(lr(99)) == pytest.approx(0.1) and float(lr(500)) == pytest.approx(0.1)
    assert schedule.learning_rate(0.5, 100, "constant") == 0.5


def test_each_tower_steps_with_its_own_learning_rate(tiny_data):
    model, batch = built_model(tiny_data, variant="additive", learning_rate=1e-3, bias_learning_rate=5e-2,
                               lr_schedule="constant", position_dropout=0.0)
    relevance_before = model.relevance_tower.global_bias.numpy()
    bias_before = model.bias_tower.position_weight.embeddings.numpy().copy()
    model.train_step(batch)
    # Adam's first step moves every variable with a gradient by its learning rate (sign of grad).
    assert abs(model.relevance_tower.global_bias.numpy() - relevance_before) == pytest.approx(1e-3, rel=1e-2)
    moved = np.abs(model.bias_tower.position_weight.embeddings.numpy() - bias_before)
    assert moved[1:7].ravel() == pytest.approx(5e-2, rel=1e-2)  # positions 1–6 were shown
    main, bias = model.variable_groups()
    assert {v.ref() for v in bias} == {v.ref() for v in model.bias_tower.trainable_variables}
    assert not {v.ref() for v in main} & {v.ref() for v in bias}
    assert int(model.optimizer.iterations) == int(model.bias_optimizer.iterations) == 1


# --- early stopping -------------------------------------------------------------------------

def test_best_epoch_and_patience_rule():
    assert checkpoints.best_epoch([0.5, 0.4, 0.45, 0.4]) == 2  # first of ties
    assert checkpoints.best_epoch([None, 0.3]) == 2 and checkpoints.best_epoch([]) == 0
    assert not checkpoints.should_stop([0.5, 0.4, 0.45], 2)
    assert checkpoints.should_stop([0.5, 0.4, 0.45, 0.46], 2)
    assert not checkpoints.should_stop([0.5, 0.4, 0.45, 0.46], 0)


@pytest.fixture(scope="module")
def overfit_dir(tiny_data, tmp_path_factory):
    """A deliberately overfitting config: a large constant rate on 600 lists, its parsed input
    cached in local files (as for data larger than memory)."""
    model_dir = str(tmp_path_factory.mktemp("overfit"))
    summary = train(tiny_data, model_dir, variant="naive", epochs=15, patience=2, learning_rate=0.05,
                    lr_schedule="constant", verbose=0, input_cache="disk")
    return model_dir, summary


def test_early_stopping_stops_and_restores_the_best_epoch(overfit_dir, tiny_data):
    model_dir, summary = overfit_dir
    history = summary["val_click_log_loss"]
    best = summary["best_epoch"]
    assert summary["stopped_early"] and summary["epochs_trained"] == best + 2 < 15
    assert len(history) == summary["epochs_trained"] and best == int(np.argmin(history)) + 1
    state = json.load(open(f"{model_dir}/early_stopping.json"))
    assert state["best_epoch"] == best and state["val_click_log_loss"] == history
    # load_trained holds the best epoch's weights, not the last epoch's.
    model, config, spec = load_trained(model_dir)
    last = build(config, spec)
    last(next(iter(data.dataset(tiny_data, "train", spec, config.train_list_size, 2))))
    assert checkpoints.restore(last, model_dir) == summary["epochs_trained"]
    best_bias = model.relevance_tower.global_bias.numpy()
    assert not np.isclose(best_bias, last.relevance_tower.global_bias.numpy())
    reader = tf.train.load_checkpoint(f"{model_dir}/{BEST_DIR}/ckpt-{best}")
    key = next(k for k in reader.get_variable_to_shape_map() if "global_bias" in k and "optimizer" not in k)
    assert best_bias == pytest.approx(reader.get_tensor(key))
    # The held-out click log-loss evaluate reports is the best epoch's.
    from ranker.models.evaluate import evaluate
    metrics = evaluate(tiny_data, model_dir=model_dir, split="eval")
    assert metrics["clicks"]["log_loss"] == pytest.approx(history[best - 1], abs=1e-4)


def test_a_stopped_run_is_not_trained_further_on_resume(overfit_dir, tiny_data):
    model_dir, first = overfit_dir
    again = train(tiny_data, model_dir, variant="naive", epochs=15, verbose=0)
    assert again["history"] == {} and again["best_epoch"] == first["best_epoch"]
    assert again["resumed_from_epoch"] == first["epochs_trained"]


# --- the propensity read-off ------------------------------------------------------------------

def _set_curve(model, logits: list[float]):
    """Bias logits b(k, d) = logits[k − 1] on every device (position table only)."""
    table = np.zeros(model.bias_tower.position_weight.embeddings.shape, np.float32)
    table[1:len(logits) + 1, 0] = logits
    model.bias_tower.position_weight.embeddings.assign(table)


def test_propensity_read_off_is_the_examination_ratio_at_the_reference_item(tiny_data):
    b, r = [0.5, -0.3, -1.0], -1.2
    model, _ = built_model(tiny_data, variant="additive")
    _set_curve(model, b)
    expected = sigmoid(np.array(b) + r) / sigmoid(b[0] + r)  # by hand: 1, 0.5498, 0.3006
    for curve in model.propensity(3, r).values():
        np.testing.assert_allclose(curve, expected, atol=1e-4)
    np.testing.assert_allclose(expected, [1.0, 0.54979, 0.30062], atol=1e-4)
    # A sample of relevance logits is read at its median.
    np.testing.assert_allclose(model.propensity(3, tf.constant([-3.0, r, 0.7]))["desktop"], expected, atol=1e-4)
    pal, _ = built_model(tiny_data, variant="pal")
    _set_curve(pal, b)
    for curve in pal.propensity(3, r).values():  # no reference: σ(b(k)) / σ(b(1))
        np.testing.assert_allclose(curve, sigmoid(b) / sigmoid(b[0]), atol=1e-4)
    learned, _ = built_model(tiny_data, variant="dla", loss="listwise")
    _set_curve(learned, b)
    for curve in learned.propensity(3, r).values():  # softmax(q)_k / softmax(q)_1
        np.testing.assert_allclose(curve, np.exp(np.array(b) - b[0]), atol=1e-4)
    naive, _ = built_model(tiny_data, variant="naive")
    assert naive.propensity(3, r) == {}


def test_reference_logit_is_the_median_over_shown_items(tiny_data):
    model, _ = built_model(tiny_data, variant="additive")
    spec = data.data_spec(tiny_data)
    ds = data.dataset(tiny_data, "eval", spec, model.config.train_list_size, 32)
    shown = np.concatenate([model.relevance_tower(b).numpy()[b[fs.MASK].numpy()] for b in ds.take(3)])
    assert model.reference_logit(ds, max_batches=3) == pytest.approx(float(np.median(shown)), rel=1e-5)


# --- ips --------------------------------------------------------------------------------------

def test_ips_weights_are_inverse_propensities_clipped():
    clicks = tf.constant([[1.0, 1.0, 0.0, 1.0]])
    mask = tf.constant([[True, True, True, False]])
    relevance = tf.constant([[0.2, -0.4, 1.0, 3.0]])
    p = np.array([1.0, 0.25, 0.05, 0.5])
    loss = ips.ips_loss(clicks, mask, relevance, tf.constant([np.log(p)], tf.float32), clip=10.0,
                        loss="pointwise")
    y = np.array([1.0 * 1, 1.0 * 4, 0.0])  # c / p; the third would be 20 → clipped at 10 if clicked
    s = sigmoid([0.2, -0.4, 1.0])
    expected = np.mean(-(y * np.log(s) + (1 - y) * np.log(1 - s)))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(ips.ips_weights(tf.constant(np.log(p), tf.float32), 10.0).numpy(),
                               [1.0, 4.0, 10.0, 2.0], rtol=1e-6)


def test_known_propensity_table_and_lookup():
    table = ips.propensity_table({"desktop": [1.0, 0.5], "mobile": [1.0, 0.25, 0.1]}, ["desktop", "mobile"], 3)
    np.testing.assert_allclose(table, [[1.0, 1.0, 0.375, 0.3],  # out of vocabulary: the mean curve
                                       [1.0, 1.0, 0.5, 0.5],    # past its curve: the last value
                                       [1.0, 1.0, 0.25, 0.1]])
    layer = ips.KnownPropensity({"desktop": [1.0, 0.5], "mobile": [1.0, 0.25, 0.1]}, ["desktop", "mobile"], 3)
    got = layer(tf.constant([[1, 2, 3], [2, 3, 9]], tf.int64), tf.constant(["mobile", "tablet"]))
    np.testing.assert_allclose(np.exp(got.numpy()), [[1.0, 0.25, 0.1], [0.375, 0.3, 0.3]], rtol=1e-6)
    with pytest.raises(RankerError, match="tablet"):
        ips.propensity_table({"desktop": [1.0]}, ["desktop", "tablet"], 3)


def test_ips_trains_with_truth_propensities_and_refuses_cascade_truth(tiny_data, tmp_path):
    summary = train(tiny_data, str(tmp_path / "ips"), variant="ips", epochs=1, ips_clip=4.0, verbose=0)
    config = json.load(open(tmp_path / "ips" / "model_config.json"))
    truth = json.load(open(f"{tiny_data}/truth.json"))["propensity"]
    assert config["ips_clip"] == 4.0 and config["propensity_source"] == "truth"
    np.testing.assert_allclose(config["propensities"]["mobile"], truth["mobile"], rtol=1e-6)
    assert summary["propensity"] == {} and summary["epochs_trained"] == 1
    cascade = tmp_path / "cascade"
    shutil.copytree(tiny_data, cascade)
    (cascade / "truth.json").write_text(json.dumps({"propensity": None}))
    code = cli.main(["train", "--data", str(cascade), "--model-dir", str(tmp_path / "c"), "--variant", "ips"])
    assert code == 2
    with pytest.raises(RankerError, match="propensities"):
        train(str(cascade), str(tmp_path / "c2"), variant="ips", epochs=1, verbose=0)
    curves = tmp_path / "p.json"
    curves.write_text(json.dumps({"desktop": [2.0, 1.0], "mobile": [2.0, 0.5]}))  # normalised to p1
    loaded, source = ips.load_propensities(str(cascade), str(curves))
    assert loaded == {"desktop": [1.0, 0.5], "mobile": [1.0, 0.25]} and source == str(curves)


# --- dla --------------------------------------------------------------------------------------

def test_dla_weights_are_ratios_to_position_one():
    relevance = tf.constant([[2.0, 0.0, 1.0]])
    position = tf.constant([[2, 1, 3]], tf.int64)  # the item at position 1 sits in slot 1
    mask = tf.constant([[True, True, True]])
    np.testing.assert_allclose(dla.relevance_weights(relevance, position, mask, 5.0).numpy(),
                               [[math.exp(-2.0), 1.0, math.exp(-1.0)]], rtol=1e-6)
    np.testing.assert_allclose(dla.propensity_weights(tf.constant([[0.0, -1.0, -3.0]]), 5.0).numpy(),
                               [[1.0, math.e, 5.0]], rtol=1e-6)


@pytest.mark.slow
def test_dla_learns_a_monotone_propensity(tmp_path):
    from conftest import write_tiny_data

    pbm = str(write_tiny_data(tmp_path / "data", n_train=3000, seed=2))  # PBM clicks, η 0.5 / 1.5
    summary = train(pbm, str(tmp_path / "m"), variant="dla", epochs=6, verbose=0)
    truth = json.load(open(f"{pbm}/truth.json"))["propensity"]
    for device, curve in summary["propensity"].items():
        assert all(b <= a + 0.03 for a, b in zip(curve, curve[1:])), (device, curve)
        assert curve[-1] < 0.8 * curve[1] < 0.8
    assert summary["propensity"]["mobile"][1] < summary["propensity"]["desktop"][1]  # η 1.5 vs 0.5
    assert truth["mobile"][1] < truth["desktop"][1]


# --- splits -----------------------------------------------------------------------------------

def test_split_errors_are_one_line(tiny_data, tmp_path, capsys):
    code = cli.main(["train", "--data", tiny_data, "--model-dir", str(tmp_path / "a"), "--split", "judged"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "judged" in err and "oracle" in err
    code = cli.main(["train", "--data", tiny_data, "--model-dir", str(tmp_path / "b"), "--split", "nope"])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_oracle_refuses_a_split_without_relevance(tmp_path):
    from conftest import TINY_SPEC, _write
    from ranker.features.spec import parse_spec

    spec = parse_spec(TINY_SPEC)
    lists = [[{fs.REQUEST_ID: "r0", fs.POSITION: 1, fs.DEVICE: "desktop", fs.ITEM_ID: "i",
               fs.CLICKED: 1, "context": {"intent": "a"},
               "features": {"category": "x", "brand": "b", "price": 1.0, "embedding": [0.0, 0.0, 0.0]}}]]
    _write(tmp_path / "train" / "part-00000-of-00001.tfrecord.gz", lists, spec)
    with pytest.raises(RankerError, match="relevance labels"):
        check_split(str(tmp_path), "train", "oracle", spec)


def test_oracle_trains_on_the_judged_split_for_fixed_epochs(tiny_data, tmp_path):
    summary = train(tiny_data, str(tmp_path), variant="oracle", split="judged", epochs=2, verbose=0)
    config = ModelConfig.load(str(tmp_path))
    assert summary["split"] == "judged" and summary["epochs_trained"] == 2
    assert summary["best_epoch"] is None and summary["val_click_log_loss"] == []
    assert config.train_list_size == data.data_spec(tiny_data).max_list_size
    assert (tmp_path / CHECKPOINT_DIR / "ckpt-2.index").exists() and not (tmp_path / BEST_DIR).exists()


def test_export_serves_the_best_epoch_that_evaluate_reports(overfit_dir, tiny_data, tmp_path):
    """An early-stopped model's served tower holds the best epoch's weights, not the last's."""
    from ranker.models.scorers import SavedModelScorer
    from ranker.serving.export import export

    model_dir, summary = overfit_dir
    assert summary["best_epoch"] < summary["epochs_trained"]  # else this test could not fail
    version = export(model_dir, str(tmp_path / "base"))["export_dir"]
    model, config, spec = load_trained(model_dir)
    batch = next(iter(data.dataset(tiny_data, "judged", spec, spec.max_list_size, 16)))
    served = SavedModelScorer(version, spec, spec.max_list_size).relevance(batch)
    np.testing.assert_allclose(served.numpy(), model.relevance_tower(batch).numpy(), rtol=1e-5, atol=1e-5)


def test_export_refuses_a_checkpoint_that_does_not_match_the_config(overfit_dir, tmp_path):
    """A model dir whose config no longer describes its checkpoint (an extra DNN layer) is refused
    in one line, not exported with freshly initialised weights."""
    from ranker.serving.export import export

    model_dir = tmp_path / "edited"
    shutil.copytree(overfit_dir[0], model_dir)
    config = json.loads((model_dir / "model_config.json").read_text())
    config["hidden_units"] = list(config["hidden_units"]) + [4]
    (model_dir / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(RankerError, match="checkpoint does not match the model"):
        export(str(model_dir), str(tmp_path / "base"))
