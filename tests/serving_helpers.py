"""Shared by the serving test modules: one good model trained once per session (cached on disk under
pytest's base temp folder, so the modules that read it do not each train one) and score helpers."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from ranker.models import train
from ranker.serving import client, export

GOOD = dict(variant="additive", epochs=1, batch_size=16, learning_rate=0.02, verbose=0)


def shared_model_dir(tiny_data: str, tmp_path_factory) -> str:
    """The additive model trained for one epoch on tiny_data (small batches so it learns enough for
    the gate's "good" side); trained on the first call of the session, then reused read-only."""
    path = os.fspath(tmp_path_factory.getbasetemp() / "serving-shared-model")
    if not os.path.exists(os.path.join(path, "train_summary.json")):
        train.train(tiny_data, path, **GOOD)
    return path


_EXPORTS: dict = {}


def shared_export(model_dir: str, tmp_path_factory) -> dict:
    """`export.export` of the shared model into a base of its own, once per session; read-only for
    its users (tests that write verdicts or versions export their own)."""
    if model_dir not in _EXPORTS:
        base = tmp_path_factory.getbasetemp() / "serving-shared-export" / "ranker"
        _EXPORTS[model_dir] = export.export(model_dir, os.fspath(base))
    return _EXPORTS[model_dir]


def keras_scores(model, spec, candidates, context) -> np.ndarray:
    arrays = client.raw_arrays(candidates, context, spec)
    return model.relevance_tower({k: tf.constant(v) for k, v in arrays.items()})[0].numpy()


def served(loaded, candidates, context, spec) -> np.ndarray:
    examples = client.serialized_examples(candidates, context, spec)
    return loaded.signatures["serving_default"](examples=tf.constant(examples))["scores"].numpy()


def same_order(a: np.ndarray, b: np.ndarray, tie: float = 1e-4) -> bool:
    """Every pair of candidates the reference `b` separates is ordered alike by `a`."""
    da, db = a[:, None] - a[None, :], b[:, None] - b[None, :]
    separated = np.abs(db) > tie
    return bool(np.all(np.sign(da[separated]) == np.sign(db[separated])))
