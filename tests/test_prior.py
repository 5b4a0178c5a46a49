"""PAL's examination prior from the harvested curve, and the crosses' L2 prior."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ranker.artifacts import HARVESTED_FILE
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import inputs, prior
from ranker.models.bias import BiasTower
from ranker.models.config import ModelConfig

HARVEST = {
    "propensity": {"desktop": [1.0, 0.5, 0.25, None], "mobile": [1.0, 0.2, None, None]},
    "ci95": {"desktop": [[1.0, 1.0], [0.45, 0.55], [0.15, 0.4], None],
             "mobile": [[1.0, 1.0], [0.1, 0.4], None, None]},
}


def _data_dir(tmp_path, harvest=HARVEST):
    (tmp_path / HARVESTED_FILE).write_text(json.dumps(harvest))
    return str(tmp_path)


def test_harvested_prior_takes_log_ratios_and_their_precision_from_the_intervals(tmp_path):
    got = prior.harvested_prior(_data_dir(tmp_path))
    desktop = got["desktop"]
    assert desktop["log_ratio"][1] == pytest.approx(math.log(0.5))
    se = (math.log(0.55) - math.log(0.45)) / (2 * prior.Z95)
    assert desktop["precision"][1] == pytest.approx(1 / se ** 2)
    # position 1 is the reference; unknown positions (null) carry no information
    assert desktop["precision"][0] == 0 and desktop["precision"][3] == 0
    # a wider interval is a weaker prior
    assert 0 < desktop["precision"][2] < desktop["precision"][1]
    assert got["mobile"]["precision"][2:] == [0.0, 0.0]


def test_no_harvest_no_prior(tmp_path):
    assert prior.harvested_prior(str(tmp_path)) == {}
    assert prior.harvested_prior(_data_dir(tmp_path, {"propensity": {}})) == {}


def _tower_with_curve(curve_logits: dict) -> BiasTower:
    tower = BiasTower(["desktop", "mobile"], 4, 0.0)
    tower(tf.ones([1, 4], tf.int64), tf.constant(["desktop"]))
    table = np.zeros([(4 + 1) * tower.num_devices, 1], np.float32)
    for device, logits in curve_logits.items():
        d = int(tower.device_ids(tf.constant(device)))
        for k, value in enumerate(logits, start=1):
            table[k * tower.num_devices + d, 0] = value
    tower.cross_weight.set_weights([table])
    return tower


def _logit(p):
    return math.log(p / (1 - p))


def test_penalty_is_zero_on_the_harvested_curve_and_grows_off_it(tmp_path):
    penalty = prior.ExaminationPrior(prior.harvested_prior(_data_dir(tmp_path)), 1.0, 1000)
    on_curve = _tower_with_curve({"desktop": [_logit(0.8), _logit(0.4), _logit(0.2), 0.0],
                                  "mobile": [_logit(0.9), _logit(0.18), 0.0, 0.0]})
    assert float(penalty(on_curve)) == pytest.approx(0.0, abs=1e-6)
    too_steep = _tower_with_curve({"desktop": [_logit(0.8), _logit(0.2), _logit(0.05), 0.0],
                                   "mobile": [_logit(0.9), _logit(0.18), 0.0, 0.0]})
    assert float(penalty(too_steep)) > 0
    heavier = prior.ExaminationPrior(prior.harvested_prior(_data_dir(tmp_path)), 3.0, 1000)
    assert float(heavier(too_steep)) == pytest.approx(3 * float(penalty(too_steep)), rel=1e-5)


def test_gradient_steps_on_the_penalty_alone_move_the_curve_to_the_harvest(tmp_path):
    penalty = prior.ExaminationPrior(prior.harvested_prior(_data_dir(tmp_path)), 1.0, 1)
    tower = _tower_with_curve({"desktop": [2.0, -3.0, -4.0, 0.0], "mobile": [2.0, -3.0, 0.0, 0.0]})
    optimizer = tf.keras.optimizers.Adam(0.05)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = penalty(tower)
        optimizer.apply_gradients(zip(tape.gradient(loss, tower.trainable_variables), tower.trainable_variables))

    for _ in range(300):
        step()
    curve = tf.sigmoid(tower.curve("desktop", 3)).numpy()
    np.testing.assert_allclose(curve[1:] / curve[0], [0.5, 0.25], rtol=0.03)


def test_cross_l2_regularises_only_the_cross_tables():
    spec = fs.parse_spec({
        "context": [{"name": "q", "kind": "categorical", "hash_buckets": 10}],
        "item": [{"name": "d", "kind": "categorical", "hash_buckets": 10}],
        "crosses": [{"name": "q_x_d", "features": ["q", "d"], "hash_buckets": 50}]})
    fields = inputs.build_fields(spec, 4, {}, cross_l2=0.1)
    for name, field in fields.items():
        field([tf.constant([["a"]]), tf.constant([["b"]])] if name == "q_x_d" else tf.constant([["a"]]))
    assert len(fields["q_x_d"].losses) == 2  # embedding and first-order weight
    assert not fields["q"].losses and not fields["d"].losses
    assert not inputs.build_fields(spec, 4, {})["q_x_d"].losses


@pytest.mark.parametrize("field, value", [("cross_l2", -1.0), ("cross_l2", float("inf")),
                                          ("propensity_prior_weight", -0.5)])
def test_prior_strengths_are_range_checked(field, value):
    with pytest.raises(RankerError, match=field.replace("_", "-")):
        ModelConfig(**{field: value})


def test_pal_trains_with_the_data_harvest_as_its_prior_and_other_variants_without(tiny_data, tmp_path):
    from ranker.models import train

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    harvest = {"propensity": {"desktop": [1.0, 0.7, 0.58], "mobile": [1.0, 0.35, 0.19]},
               "ci95": {"desktop": [[1, 1], [0.6, 0.8], [0.5, 0.66]], "mobile": [[1, 1], [0.3, 0.4], [0.15, 0.24]]}}
    (data / HARVESTED_FILE).write_text(json.dumps(harvest))
    quick = dict(epochs=1, patience=0, backup_every=0, verbose=0)
    train.train(str(data), str(tmp_path / "pal"), variant="pal", **quick)
    config = ModelConfig.load(str(tmp_path / "pal"))
    assert set(config.propensity_prior) == {"desktop", "mobile"} and config.train_items > 0
    train.train(str(data), str(tmp_path / "off"), variant="pal", propensity_prior_weight=0.0, **quick)
    assert ModelConfig.load(str(tmp_path / "off")).propensity_prior == {}
    train.train(str(data), str(tmp_path / "naive"), variant="naive", **quick)
    assert ModelConfig.load(str(tmp_path / "naive")).propensity_prior == {}
