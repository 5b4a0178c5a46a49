"""Towers, combinations, losses and dropouts: arithmetic against hand-computed values, and behaviour."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from serving_helpers import shared_model_dir

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import combine, data
from ranker.models.bias import BiasTower, bias_logit_dropout
from ranker.models.config import ModelConfig
from ranker.models.relevance import factorization_machine
from ranker.models.train import build, load_trained, train


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def first_batch(data_dir, split="train", batch_size=16):
    spec = data.data_spec(data_dir)
    list_size = spec.max_list_size if split == "judged" else data.click_list_size(data_dir, spec)
    return next(iter(data.dataset(data_dir, split, spec, list_size, batch_size)))


# --- arithmetic -----------------------------------------------------------------------------

def test_additive_combines_logits():
    r, b = tf.constant([[0.3, -1.2]]), tf.constant([[-0.5, 2.0]])
    log_p, log_1mp = combine.click_log_probs(r, combine.bias_term(b, "additive"), "additive")
    expected = [sigmoid(0.3 - 0.5), sigmoid(-1.2 + 2.0)]
    np.testing.assert_allclose(np.exp(log_p.numpy()[0]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.exp(log_1mp.numpy()[0]), 1 - np.array(expected), rtol=1e-5)


def test_pal_multiplies_probabilities():
    r, b = tf.constant([[0.3, -1.2]]), tf.constant([[-0.5, 2.0]])
    log_p, log_1mp = combine.click_log_probs(r, combine.bias_term(b, "pal"), "pal")
    expected = [sigmoid(0.3) * sigmoid(-0.5), sigmoid(-1.2) * sigmoid(2.0)]
    np.testing.assert_allclose(np.exp(log_p.numpy()[0]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.exp(log_1mp.numpy()[0]), 1 - np.array(expected), rtol=1e-5)


def test_pal_cross_entropy_matches_hand_value_and_is_stable_at_extremes():
    r, b = tf.constant([[0.3, -1.2]]), tf.constant([[-0.5, 2.0]])
    labels, mask = tf.constant([[1.0, 0.0]]), tf.constant([[True, True]])
    log_p, log_1mp = combine.click_log_probs(r, combine.bias_term(b, "pal"), "pal")
    p1, p2 = sigmoid(0.3) * sigmoid(-0.5), sigmoid(-1.2) * sigmoid(2.0)
    expected = -(math.log(p1) + math.log(1 - p2)) / 2
    assert float(combine.pointwise_loss(labels, log_p, log_1mp, mask)) == pytest.approx(expected, rel=1e-5)
    # Saturated towers: p → 1 and p → 0 must give finite losses and gradients.
    r = tf.Variable([[40.0, -40.0, 40.0]])
    b = tf.constant([[40.0, -40.0, -40.0]])
    with tf.GradientTape() as tape:
        log_p, log_1mp = combine.click_log_probs(r, combine.bias_term(b, "pal"), "pal")
        loss = combine.pointwise_loss(tf.constant([[0.0, 1.0, 1.0]]), log_p, log_1mp,
                                      tf.constant([[True, True, True]]))
    assert np.isfinite(float(loss)) and float(loss) > 10
    assert np.all(np.isfinite(tape.gradient(loss, r).numpy()))


def test_log1mexp_is_accurate_across_range():
    a = tf.constant([-1e-6, -0.1, -0.7, -5.0, -50.0], tf.float64)
    # Reference in float64 from whichever textbook form is exact at each point.
    expected = [math.log(-math.expm1(x)) if x > -1 else math.log1p(-math.exp(x)) for x in a.numpy()]
    np.testing.assert_allclose(combine.log1mexp(a).numpy(), expected, rtol=1e-6)


def test_factorization_machine_equals_pairwise_dot_products():
    v = tf.random.stateless_normal([2, 3, 4, 5], seed=[1, 2])  # [b, l, fields, k]
    brute = sum(tf.reduce_sum(v[:, :, i] * v[:, :, j], -1)
                for i, j in itertools.combinations(range(4), 2))
    np.testing.assert_allclose(factorization_machine(v).numpy(), brute.numpy(), rtol=1e-4, atol=1e-5)


# --- dropouts -------------------------------------------------------------------------------

def test_position_dropout_only_in_training():
    tower = BiasTower(["desktop", "mobile"], num_positions=20, position_dropout=0.3)
    position = tf.fill([200, 10], tf.constant(3, tf.int64))
    trained = tower.position_ids(position, training=True).numpy()
    assert 0.25 < (trained == 0).mean() < 0.35
    assert set(np.unique(trained)) == {0, 3}
    assert (tower.position_ids(position, training=False).numpy() == 3).all()


def test_positions_past_the_table_share_the_last_bucket():
    tower = BiasTower(["desktop"], num_positions=5, position_dropout=0.0)
    ids = tower.position_ids(tf.constant([[1, 5, 6, 40, 0]], tf.int64), training=False)
    assert ids.numpy().tolist() == [[1, 5, 5, 5, 0]]


def test_bias_logit_dropout_zeroes_whole_terms_only_in_training():
    bias = tf.fill([100, 10], 2.0)
    dropped = bias_logit_dropout(bias, 0.5, training=True).numpy()
    assert set(np.unique(dropped)) == {0.0, 2.0}  # zeroed or untouched, never rescaled
    assert 0.4 < (dropped == 0).mean() < 0.6
    assert (bias_logit_dropout(bias, 0.5, training=False).numpy() == 2.0).all()


def test_bias_tower_learns_a_curve_per_device():
    tower = BiasTower(["desktop", "mobile"], num_positions=4, position_dropout=0.0)
    position = tf.constant([[1, 2]], tf.int64)
    tower(position, tf.constant(["desktop"]))  # build
    tower.cross_weight.embeddings.assign(tf.random.normal(tower.cross_weight.embeddings.shape))
    desktop = tower(position, tf.constant(["desktop"])).numpy()
    mobile = tower(position, tf.constant(["mobile"])).numpy()
    assert not np.allclose(desktop[0, 1] - desktop[0, 0], mobile[0, 1] - mobile[0, 0])


# --- the model on data ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def additive_dir(tiny_data, tmp_path_factory):
    """The test run's shared additive model (serving_helpers): these tests only read it."""
    return shared_model_dir(tiny_data, tmp_path_factory)


def test_relevance_ignores_position_and_device(additive_dir, tiny_data):
    model, _, _ = load_trained(additive_dir)
    batch = first_batch(tiny_data)
    moved = dict(batch, **{fs.POSITION: tf.reverse(batch[fs.POSITION], [1]),
                           fs.DEVICE: tf.fill(tf.shape(batch[fs.DEVICE]), "tablet")})
    out, out_moved = model(batch), model(moved)
    np.testing.assert_array_equal(out["relevance"].numpy(), out_moved["relevance"].numpy())
    assert not np.allclose(out["bias"].numpy(), out_moved["bias"].numpy())


def test_padded_slots_change_neither_loss_nor_metrics(additive_dir, tiny_data):
    model, _, _ = load_trained(additive_dir)
    batch = first_batch(tiny_data, batch_size=8)
    batch = dict(batch)
    mask = batch[fs.MASK].numpy().copy()
    mask[:, -2:] = False  # pretend the last two slots of every list are padding
    batch[fs.MASK] = tf.constant(mask)
    garbage = dict(batch)
    garbage[fs.CLICKED] = tf.where(batch[fs.MASK], batch[fs.CLICKED], 1)
    garbage["price"] = tf.where(batch[fs.MASK], batch["price"], 1e6)
    assert float(model.compute_loss(batch)) == pytest.approx(float(model.compute_loss(garbage)), rel=1e-6)
    assert not np.isclose(float(model.compute_loss(batch)),
                          float(model.compute_loss(dict(batch, **{fs.MASK: tf.ones_like(batch[fs.MASK])}))))


@pytest.mark.parametrize("variant,loss", [
    ("naive", "pointwise"), ("pal", "pointwise"), ("additive", "pointwise"),
    ("position-feature", "pointwise"), ("oracle", "pointwise"), ("pal", "listwise")])
def test_a_few_steps_lower_the_loss(tiny_data, variant, loss):
    """A model built as `train` builds it (config from the data) lowers its loss in a few steps."""
    spec = data.data_spec(tiny_data)
    split = "judged" if variant == "oracle" else "train"
    list_size = spec.max_list_size if variant == "oracle" else data.click_list_size(tiny_data, spec)
    ds = data.dataset(tiny_data, split, spec, list_size, 64, shuffle=True, seed=1)
    config = ModelConfig(variant=variant, loss=loss, split=split, train_list_size=list_size,
                         moments=data.feature_moments(ds, spec))
    model = build(config, spec)
    batches = list(ds.take(8))
    model(batches[0])
    model.build_optimizers()
    before = np.mean([float(model.compute_loss(b)) for b in batches])
    step = tf.function(model.train_step)
    for _ in range(3):
        for b in batches:
            step(b)
    after = np.mean([float(model.compute_loss(b)) for b in batches])
    assert after < before


def test_position_feature_baseline_scores_at_a_fixed_position(tiny_data, tmp_path):
    train(tiny_data, str(tmp_path), variant="position-feature", epochs=1, verbose=0)
    model, _, _ = load_trained(str(tmp_path))
    batch = first_batch(tiny_data)
    served = {k: v for k, v in batch.items() if k not in (fs.POSITION, fs.DEVICE)}
    at_one = dict(batch, **{fs.POSITION: tf.ones_like(batch[fs.POSITION]),
                            fs.DEVICE: tf.fill(tf.shape(batch[fs.DEVICE]), "")})
    np.testing.assert_allclose(model.relevance_tower(served).numpy(),
                               model.relevance_tower(at_one).numpy(), rtol=1e-6)
    assert not np.allclose(model.relevance_tower(batch).numpy(), model.relevance_tower(at_one).numpy())


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
def test_training_resumes_from_the_last_epoch(tiny_data, tmp_path):
    first = train(tiny_data, str(tmp_path), variant="naive", epochs=1, verbose=0)
    assert first["resumed_from_epoch"] == 0
    second = train(tiny_data, str(tmp_path), variant="naive", epochs=2, verbose=0)
    assert second["resumed_from_epoch"] == 1 and len(second["history"]["loss"]) == 1


def test_config_rejects_bad_flags():

    with pytest.raises(RankerError, match="position-dropout"):
        ModelConfig(position_dropout=1.5)
    with pytest.raises(RankerError, match="variant"):
        ModelConfig(variant="magic")


def test_pal_with_given_propensities_has_no_bias_tower_and_learns_relevance(tiny_data, tmp_path):
    summary = train(tiny_data, str(tmp_path / "m"), variant="pal", epochs=2, verbose=0, propensities="truth")
    model, config, _ = load_trained(str(tmp_path / "m"))
    assert config.known_examination and not config.has_bias_tower and model.bias_tower is None
    assert config.propensity_source == "truth" and set(config.propensities) == {"desktop", "mobile"}
    assert summary["propensity"] == {}  # fixed, not learned
    assert summary["history"]["val_click_log_loss"][-1] < summary["history"]["val_click_log_loss"][0]
    with pytest.raises(RankerError, match="pointwise only"):
        train(tiny_data, str(tmp_path / "l"), variant="pal", epochs=1, verbose=0, propensities="truth",
              loss="listwise")
    with pytest.raises(RankerError, match="ips or pal only"):
        train(tiny_data, str(tmp_path / "n"), variant="naive", epochs=1, verbose=0, propensities="truth")
