"""The relevance tower's fields: per-dimension FM fields, robust numeric transforms, hashed crosses."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data, inputs
from ranker.models.config import ModelConfig
from ranker.models.relevance import RelevanceTower, factorization_machine, factorization_machine_from_sums

SPEC = fs.parse_spec({
    "context": [{"name": "query_id", "kind": "categorical", "hash_buckets": 50}],
    "item": [
        {"name": "doc_id", "kind": "categorical", "hash_buckets": 50},
        {"name": "price", "kind": "numeric"},
        {"name": "vec", "kind": "vector", "length": 3},
    ],
    "crosses": [{"name": "query_x_doc", "features": ["query_id", "doc_id"], "hash_buckets": 1_000_003}],
})


def _features(batch=2, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "query_id": tf.constant([f"q{i}" for i in range(batch)]),
        "doc_id": tf.constant([[f"d{rng.integers(9)}" for _ in range(size)] for _ in range(batch)]),
        "price": tf.constant(rng.normal(size=(batch, size)), tf.float32),
        "vec": tf.constant(rng.normal(size=(batch, size, 3)), tf.float32),
        fs.MASK: tf.ones([batch, size], tf.bool),
    }


def test_every_vector_dimension_is_an_fm_field_that_interacts_with_the_others():
    field = inputs.VectorField("v", 4, length=2, transform=inputs.STANDARD)
    x = tf.constant([[[1.5, -2.0], [0.0, 3.0], [2.0, 0.0]]])  # [b=1, l=3, n=2]
    embeddings, out = field.embeddings(x), field(x)
    assert embeddings.shape == (1, 3, 2, 4) and out.dnn_input.shape == (1, 3, 2)
    v = field.vectors.numpy()
    expected = x.numpy()[..., 0] * x.numpy()[..., 1] * float(v[0] @ v[1])  # x0·x1·<v0, v1>
    np.testing.assert_allclose(factorization_machine(embeddings).numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(factorization_machine_from_sums(out.fm_sum, out.fm_square).numpy(),
                               expected, rtol=1e-5, atol=1e-6)
    assert abs(float(v[0] @ v[1])) > 0  # so the checks above are not 0 == 0


def test_tower_has_one_fm_field_per_number_dimension_and_cross():
    tower = RelevanceTower(SPEC, 4, (8,), {}, numeric_transform=inputs.STANDARD)
    features = _features()
    shape = tf.shape(features["doc_id"])
    embeddings, sums, squares = [], [], []
    for field, value in tower._field_inputs(features, shape[1], shape[0]):
        out = field(value)
        sums.append(out.fm_sum)
        squares.append(out.fm_square)
        if isinstance(field, inputs.NumericField):
            embeddings.append(field.embeddings(tf.expand_dims(value, -1)))
        elif isinstance(field, inputs.VectorField):
            embeddings.append(field.embeddings(value))
        else:
            embeddings.append(out.fm_sum[..., None, :])
    stacked = tf.concat(embeddings, axis=-2)
    assert stacked.shape == (2, 4, 1 + 1 + 1 + 3 + 1, 4)  # query, doc, price, vec×3, cross
    np.testing.assert_allclose(factorization_machine_from_sums(tf.add_n(sums), tf.add_n(squares)).numpy(),
                               factorization_machine(stacked).numpy(), rtol=1e-4, atol=1e-6)
    assert tower(features).shape == (2, 4)


def test_signed_log1p_then_standardise_then_clip():
    field = inputs.NumericField("n", 2, mean=0.5, std=2.0, transform=inputs.LOG1P)
    raw = np.array([[np.e - 1, -(np.e - 1), 0.0, 1e30]], np.float32)
    x = field(tf.constant(raw)).dnn_input
    np.testing.assert_allclose(x.numpy()[0, :, 0], [(1 - 0.5) / 2, (-1 - 0.5) / 2, -0.25, inputs.CLIP],
                               rtol=1e-5)
    standard = inputs.NumericField("s", 2, mean=0.5, std=2.0, transform=inputs.STANDARD)
    np.testing.assert_allclose(standard(tf.constant(raw)).dnn_input.numpy()[0, :2, 0],
                               [(np.e - 1.5) / 2, (1 - np.e - 0.5) / 2], rtol=1e-5)


def test_moments_are_taken_on_transformed_shown_values():
    batch = {
        fs.MASK: np.array([[True, True, False]]),
        "price": np.array([[np.e - 1, np.e ** 3 - 1, 1e6]], np.float32),  # padded 1e6 is ignored
        "vec": np.array([[[0, -(np.e - 1), 0], [0, np.e - 1, 0], [9, 9, 9]]], np.float32),
    }
    spec = fs.parse_spec({"item": [{"name": "price", "kind": "numeric"},
                                   {"name": "vec", "kind": "vector", "length": 3}]})
    moments = data.feature_moments(tf.data.Dataset.from_tensors(batch), spec)
    assert moments["price"]["log1p"]["mean"] == pytest.approx(2.0, rel=1e-5)  # mean of log1p: 1, 3
    assert moments["price"]["log1p"]["std"] == pytest.approx(1.0, rel=1e-5)
    assert moments["price"]["mean"] == pytest.approx((np.e + np.e ** 3 - 2) / 2, rel=1e-5)  # raw
    np.testing.assert_allclose(moments["vec"]["log1p"]["mean"], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(moments["vec"]["log1p"]["std"], [0, 1, 0], atol=1e-5)
    tower = RelevanceTower(spec, 2, (4,), moments, numeric_transform=inputs.LOG1P)
    assert float(tower.fields["price"].mean) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(RankerError, match="lack the 'log1p' transform"):
        RelevanceTower(spec, 2, (4,), {"price": {"mean": 0.0, "std": 1.0}})


def test_cross_ids_tell_apart_rearranged_components():
    field = inputs.CrossField(SPEC.crosses[0], 4)
    ids = field.ids([tf.constant(["a", "ab", "q", "d", "q"]), tf.constant(["bc", "c", "d", "q", "d"])])
    ids = ids.numpy().tolist()
    assert ids[0] != ids[1]  # ("a", "bc") vs ("ab", "c"): the separator keeps them apart
    assert ids[2] != ids[3]  # swapped components
    assert ids[2] == ids[4]  # the same pair, the same id


def test_crosses_come_from_raw_features_so_served_per_candidate_context_scores_the_same():
    tower = RelevanceTower(SPEC, 4, (8,), {}, numeric_transform=inputs.STANDARD)
    features = _features()
    served = dict(features, query_id=tf.repeat(features["query_id"][:, None], 4, axis=1))
    np.testing.assert_allclose(tower(features).numpy(), tower(served).numpy(), rtol=1e-6)
    before = tower(features).numpy()
    cross = tower.fields["query_x_doc"]
    for table in (cross.embedding.embeddings, cross.weight.embeddings):
        table.assign(tf.zeros_like(table))
    assert not np.allclose(before, tower(features).numpy())  # the cross is a field of the model


def test_dnn_dropout_only_in_training_and_layer_norm_on_request():
    tower = RelevanceTower(SPEC, 4, (16, 8), {}, dnn_dropout=0.5, dnn_norm="layer")
    assert isinstance(tower.dnn.layers[0], tf.keras.layers.LayerNormalization)
    assert sum(isinstance(layer, tf.keras.layers.Dropout) for layer in tower.dnn.layers) == 2
    features = _features()
    np.testing.assert_allclose(tower(features).numpy(), tower(features).numpy())
    assert not np.allclose(tower(features, training=True).numpy(), tower(features, training=True).numpy())


@pytest.mark.parametrize("field,value,message", [
    ("embedding_dim", 0, "--embedding-dim"),
    ("embedding_dim", 2.5, "--embedding-dim"),
    ("hidden_units", (64, 0), "--hidden-units"),
    ("hidden_units", (), "--hidden-units"),
    ("dnn_dropout", 1.0, "--dnn-dropout"),
    ("dnn_dropout", -0.1, "--dnn-dropout"),
    ("numeric_transform", "quantile", "numeric transform"),
    ("dnn_norm", "batch", "DNN normalisation"),
])
def test_config_rejects_bad_tower_settings(field, value, message):
    with pytest.raises(RankerError, match=message):
        ModelConfig(**{field: value})


def test_for_config_honours_every_tower_setting():
    config = ModelConfig(embedding_dim=3, hidden_units=(5,), dnn_dropout=0.2, dnn_norm="layer",
                         numeric_transform="standard")
    tower = RelevanceTower.for_config(SPEC, config)
    tower(_features())
    assert tower.fields["vec"].vectors.shape == (3, 3)
    assert tower.fields["price"].transform == "standard"
    assert [layer.units for layer in tower.dnn.layers if isinstance(layer, tf.keras.layers.Dense)] == [5, 1]
    assert [layer.rate for layer in tower.dnn.layers if isinstance(layer, tf.keras.layers.Dropout)] == [0.2]


def test_encoded_batches_score_exactly_like_raw_strings():
    """train caches Encoder's ids; serving and evaluation send strings: the same logits either way."""
    tower = RelevanceTower(SPEC, 4, (8,), {}, numeric_transform=inputs.STANDARD)
    raw = _features(batch=3, size=5, seed=2)
    encoded = inputs.Encoder(SPEC)(raw)
    assert encoded["doc_id"].dtype.is_integer and encoded["query_x_doc"].shape == (3, 5)
    assert raw["doc_id"].dtype == tf.string  # the raw batch is left as it was
    np.testing.assert_allclose(tower(encoded).numpy(), tower(raw).numpy(), rtol=1e-6, atol=1e-6)
