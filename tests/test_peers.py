"""ranker.peers: tree arms on `preprocess` output; judged nDCG per list and in aggregate."""
from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from ranker import peers
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data
from ranker.peers import features, metrics, records

LIBRARY = {"xgboost": "xgboost", "xgboost-unbiased": "xgboost", "lightgbm": "lightgbm",
           "lightgbm-position": "lightgbm"}


@pytest.fixture(scope="module")
def random_order_ndcg(tiny_data) -> float:
    """Expected judged nDCG@10 of a random ranking (numpy per-list values, 50 draws)."""
    spec = data.data_spec(tiny_data)
    table = features.table(tiny_data, "judged", spec, spec.max_list_size)
    labels = features.padded(table.relevance, table.sizes, -1.0)
    mask = labels >= 0
    rng = np.random.default_rng(0)
    return float(np.mean([metrics.ndcg_per_list(labels, rng.random(labels.shape), mask, 10).mean()
                          for _ in range(50)]))


@pytest.mark.parametrize("arm", peers.TREE_ARMS)
def test_every_tree_arm_beats_random_order_on_judged_lists(arm, tiny_data, random_order_ndcg):
    pytest.importorskip(LIBRARY[arm])
    result = peers.train_and_score(arm, tiny_data, seed=0, num_boost_round=20, num_threads=1)
    judged, per_list = result["judged"], result["judged_per_list"]
    assert set(judged) == {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "lists"}
    assert judged["lists"] == 40
    assert per_list["request_id"] == [f"j{i}" for i in range(40)]  # the judged file's order
    assert np.mean(per_list["ndcg@10"]) == pytest.approx(judged["ndcg@10"], abs=1e-4)
    assert judged["ndcg@10"] > random_order_ndcg + 0.1
    assert result["clicks"]["log_loss"] is None and 0.5 < result["clicks"]["auc"] <= 1.0
    assert 1 <= result["model"]["trees"] <= 20


def test_per_list_ndcg_mean_equals_tf_ranking_aggregate():
    labels = np.array([[0.0, 1.0, 2.0, -1.0], [3.0, 0.0, 0.0, 1.0], [0.0, 0.0, -1.0, -1.0],
                       [2.0, 2.0, 1.0, 0.0]])
    mask = labels >= 0
    scores = np.array([[3.0, 2.0, 1.0, 9.0], [0.5, 0.5, 0.5, 0.1], [1.0, 2.0, 0.0, 0.0],
                       [1.0, 1.0, 2.0, 1.0]])  # padded slot scored highest, ties in lists 2 and 4
    strict = metrics.strict_order(scores, mask, seed=3)
    for k in metrics.NDCG_CUTOFFS:
        per_list = metrics.ndcg_per_list(labels, strict, mask, k)
        assert per_list.mean() == pytest.approx(metrics.tfr_ndcg(labels, strict, mask, k), abs=1e-6)
    per_list = metrics.ndcg_per_list(labels, strict, mask, 10)
    dcg, ideal = 1 / np.log2(3) + 3 / np.log2(4), 3 + 1 / np.log2(3)
    assert per_list[0] == pytest.approx(dcg / ideal)  # the padded slot takes no rank
    assert per_list[2] == 0.0  # no relevant item: counts 0


def test_strict_order_keeps_scores_and_breaks_ties_only():
    scores = np.array([[0.2, 0.9, 0.2, 0.5]])
    strict = metrics.strict_order(scores, np.ones_like(scores, bool), seed=0)
    assert len(set(strict[0])) == 4
    assert np.argmax(strict[0]) == 1 and strict[0, 3] > max(strict[0, 0], strict[0, 2])


def test_auc_matches_pairwise_count():
    rng = np.random.default_rng(1)
    labels, scores = rng.integers(0, 2, 200), rng.integers(0, 5, 200).astype(float)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.auc(labels, scores) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_lists_follow_data_dataset_order_across_shards(tiny_data, tmp_path):
    """Two judged shards: the peers' table and data.dataset see the lists in the same order."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_data, copy, ignore=shutil.ignore_patterns("judged"))
    lists = list(records.serialized(tiny_data, "judged"))
    for shard, part in enumerate((lists[:25], lists[25:])):
        path = copy / "judged" / f"part-0000{shard}-of-00002.tfrecord.gz"
        path.parent.mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for record in part:
                writer.write(record)
    spec = data.data_spec(str(copy))
    table = features.table(str(copy), "judged", spec, spec.max_list_size)
    expected = [b[fs.RELEVANCE].numpy()[b[fs.MASK].numpy()]
                for b in data.dataset(str(copy), "judged", spec, spec.max_list_size, 7)]
    np.testing.assert_array_equal(table.relevance, np.concatenate(expected))
    assert table.request_ids[:2] == ["j0", "j25"]  # interleaved, as data.dataset reads them


def test_categoricals_are_vocabulary_codes(tiny_data):
    spec = data.data_spec(tiny_data)
    table = features.table(tiny_data, "eval", spec, 6)
    names = table.columns
    assert names[table.categorical[0]] == "intent" and "embedding[2]" in names
    codes = table.x[:, names.index("category")]
    assert set(np.unique(codes)) <= {1.0, 2.0, 3.0, 4.0}  # x y z w; 0 would be out of vocabulary
    assert table.x[:, names.index("brand")].max() < 16  # hashed into the spec's 16 buckets


@pytest.mark.parametrize("arm", ["xgboost", "lightgbm-position"])
def test_a_missing_library_is_a_one_line_error(arm, tiny_data, monkeypatch):
    monkeypatch.setitem(sys.modules, LIBRARY[arm], None)  # import now raises ImportError
    with pytest.raises(RankerError) as err:
        peers.train_and_score(arm, tiny_data, seed=0)
    assert "pip install -e '.[bench]'" in str(err.value) and "\n" not in str(err.value)


def test_unknown_arm_and_missing_judged_split_are_refused(tiny_data, tmp_path):
    with pytest.raises(RankerError, match="unknown tree arm"):
        peers.train_and_score("catboost", tiny_data, seed=0)
    copy = tmp_path / "nojudged"
    shutil.copytree(tiny_data, copy, ignore=shutil.ignore_patterns("judged"))
    with pytest.raises(RankerError, match="no judged lists"):
        peers.train_and_score("lightgbm", str(copy), seed=0)
