"""Peers a user could pip-install instead of the ranker, trained on the same `preprocess` output.

Gradient-boosted LambdaMART (the `bench` extra: xgboost, lightgbm), naive and position-debiased:

    from ranker import peers
    result = peers.train_and_score("lightgbm-position", data_dir, seed=0)
    # {"arm": …,
    #  "judged": {"ndcg@1": …, "ndcg@3": …, "ndcg@5": …, "ndcg@10": …, "lists": N},
    #  "judged_per_list": {"request_id": [...], "ndcg@10": [...]},   # data.dataset's list order
    #  "clicks": {"log_loss": None, "auc": …},     # eval clicks; tree scores are not probabilities
    #  "model": {"trees": …, "categorical": "native" | "codes", "seconds": …}}

Importing this package needs neither library; a missing one is a one-line RankerError.
"""
from __future__ import annotations

TREE_ARMS = ("xgboost", "xgboost-unbiased", "lightgbm", "lightgbm-position")


def train_and_score(arm: str, data_dir: str, seed: int, score_data_dir: str | None = None,
                    **kwargs) -> dict:
    """Trains a tree arm on data_dir's train clicks (early stopping on its eval clicks) and scores
    the judged lists of `score_data_dir or data_dir`. Keywords: `num_boost_round` caps the trees
    (default 500), `num_threads` (default 0: every core)."""
    from ranker.peers import trees

    return trees.train_and_score(arm, data_dir, seed, score_data_dir, **kwargs)
