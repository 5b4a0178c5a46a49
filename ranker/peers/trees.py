"""LambdaMART peers, trained on the ranker arms' clicks and scored on the same judged lists.

Groups are served lists (one request each), labels are clicks, candidates of a group come in their
displayed order (what XGBoost's `lambdarank_unbiased` assumes; LightGBM gets the position itself).
Fixed hyper-parameters, the same capacity in both libraries (31 leaves a tree, learning rate 0.05),
early stopping on the eval split's click nDCG@10 (held-out training-side clicks, never the judged
lists).
"""
from __future__ import annotations

import importlib
import logging
import time

import numpy as np

from ranker.artifacts import EVAL, JUDGED, TRAIN
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data
from ranker.peers import TREE_ARMS, features, metrics

logger = logging.getLogger(__name__)

NUM_BOOST_ROUND = 500
EARLY_STOPPING_ROUNDS = 50
LEARNING_RATE = 0.05
NUM_LEAVES = 31
EVAL_AT = 10
INSTALL_HINT = "install the bench extra: pip install -e '.[bench]'"


def _library(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RankerError(f"the tree peers need {name}; {INSTALL_HINT}") from None


def _xgb_matrix(xgb, table: features.Table, categorical: bool):
    types = ["q"] * table.x.shape[1]
    for i in table.categorical:
        types[i] = "c" if categorical else "q"
    matrix = xgb.DMatrix(table.x, label=np.maximum(table.clicked, 0), feature_names=None,
                         feature_types=types, enable_categorical=categorical)
    matrix.set_group(table.sizes)
    return matrix


def _fit_xgboost(arm: str, train: features.Table, valid: features.Table | None, seed: int,
                 rounds: int, threads: int):
    xgb = _library("xgboost")
    params = {"objective": "rank:ndcg", "lambdarank_pair_method": "topk",
              "lambdarank_unbiased": arm == "xgboost-unbiased", "eta": LEARNING_RATE,
              "tree_method": "hist", "grow_policy": "lossguide", "max_leaves": NUM_LEAVES,
              "max_depth": 0, "eval_metric": f"ndcg@{EVAL_AT}", "seed": seed, "verbosity": 0,
              "nthread": threads}
    try:
        matrices = [_xgb_matrix(xgb, t, True) if t is not None else None for t in (train, valid)]
        categorical = "native"
    except (ValueError, TypeError, xgb.core.XGBoostError) as err:
        logger.warning("xgboost: native categoricals refused (%s); integer codes as numbers", err)
        matrices = [_xgb_matrix(xgb, t, False) if t is not None else None for t in (train, valid)]
        categorical = "codes"
    dtrain, dvalid = matrices
    booster = xgb.train(params, dtrain, num_boost_round=rounds,
                        evals=[(dvalid, "eval")] if valid is not None else (),
                        early_stopping_rounds=EARLY_STOPPING_ROUNDS if valid is not None else None,
                        verbose_eval=False)
    trees = booster.best_iteration + 1 if valid is not None else booster.num_boosted_rounds()

    def predict(table: features.Table) -> np.ndarray:
        return booster.predict(_xgb_matrix(xgb, table, categorical == "native"),
                               iteration_range=(0, trees))

    return predict, {"trees": int(trees), "categorical": categorical}


def _lgb_dataset(lgb, table: features.Table, position: bool, reference=None):
    return lgb.Dataset(table.x, label=np.maximum(table.clicked, 0), group=table.sizes,
                       categorical_feature=table.categorical, reference=reference,
                       position=table.positions - 1 if position else None, free_raw_data=False)


def _fit_lightgbm(arm: str, train: features.Table, valid: features.Table | None, seed: int,
                  rounds: int, threads: int):
    lgb = _library("lightgbm")
    position = arm == "lightgbm-position"
    if position and not hasattr(lgb.Dataset, "set_position"):
        raise RankerError(f"{arm} needs lightgbm>=4.1 (Dataset(position=…)); {INSTALL_HINT}")
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [EVAL_AT],
              "learning_rate": LEARNING_RATE, "num_leaves": NUM_LEAVES, "seed": seed,
              "deterministic": True, "force_col_wise": True, "verbosity": -1,
              "num_threads": threads}
    dtrain = _lgb_dataset(lgb, train, position)
    callbacks, valid_sets = [], []
    if valid is not None:
        valid_sets = [_lgb_dataset(lgb, valid, False, reference=dtrain)]
        callbacks = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)]
    booster = lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=valid_sets,
                        callbacks=callbacks)
    trees = booster.best_iteration if valid is not None and booster.best_iteration > 0 \
        else booster.current_iteration()

    def predict(table: features.Table) -> np.ndarray:
        return booster.predict(table.x, num_iteration=trees)

    return predict, {"trees": int(trees), "categorical": "native"}


def _judged(predict, table: features.Table, seed: int) -> tuple[dict, dict]:
    scores = features.padded(predict(table), table.sizes, 0.0)
    labels = features.padded(table.relevance, table.sizes, fs.PADDING_LABEL)
    mask = np.arange(labels.shape[1])[None, :] < table.sizes[:, None]
    aggregate, per_list = metrics.judged_metrics(labels, scores, mask, seed)
    return aggregate, {"request_id": list(table.request_ids),
                       "ndcg@10": [round(float(v), 6) for v in per_list]}


def train_and_score(arm: str, data_dir: str, seed: int, score_data_dir: str | None = None,
                    num_boost_round: int = NUM_BOOST_ROUND, num_threads: int = 0) -> dict:
    """Trains `arm` on data_dir's train clicks (early stopping on its eval split), scores the
    judged lists of `score_data_dir or data_dir`; see ranker.peers for the returned layout.
    `num_threads` 0 lets the library use every core (on a machine other jobs load, 1 can be
    several times faster: OpenMP threads spin waiting for each other)."""
    if arm not in TREE_ARMS:
        raise RankerError(f"unknown tree arm {arm!r}; choose one of {', '.join(TREE_ARMS)}")
    if num_threads < 0:
        raise RankerError(f"num_threads must be 0 (all cores) or more, got {num_threads}")
    if num_boost_round < 1:
        raise RankerError(f"num_boost_round must be at least 1, got {num_boost_round}")
    score_dir = score_data_dir or data_dir
    if not data.has_split(score_dir, JUDGED):
        raise RankerError(f"{score_dir}/{JUDGED}: no judged lists to score the tree peers on")
    library, fit = ("xgboost", _fit_xgboost) if arm.startswith("xgboost") \
        else ("lightgbm", _fit_lightgbm)
    _library(library)  # a missing library fails before any reading
    spec = data.data_spec(data_dir)
    list_size = data.click_list_size(data_dir, spec)
    started = time.perf_counter()
    train = features.table(data_dir, TRAIN, spec, list_size)
    valid = features.table(data_dir, EVAL, spec, list_size) if data.has_split(data_dir, EVAL) \
        else None
    logger.info("%s: %d lists, %d candidates, %d columns", arm, train.num_lists, len(train.x),
                train.x.shape[1])
    predict, info = fit(arm, train, valid, seed, num_boost_round, num_threads)
    judged_size = data.data_spec(score_dir).max_list_size
    judged_table = features.table(score_dir, JUDGED, spec, judged_size)
    judged, per_list = _judged(predict, judged_table, seed)
    clicks = {"log_loss": None,
              "auc": None if valid is None else metrics.auc(valid.clicked, predict(valid))}
    info["seconds"] = round(time.perf_counter() - started, 2)
    logger.info("%s: %d trees, judged nDCG@10 %.4f", arm, info["trees"], judged["ndcg@10"])
    return {"arm": arm, "judged": judged, "judged_per_list": per_list, "clicks": clicks,
            "model": info}
