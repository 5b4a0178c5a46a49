"""Shared by the serving test modules: one good model trained and exported once per test run (cached
on disk under the run's temp folder, which pytest-xdist workers share, so the modules that read it
do not each train one) and score helpers."""
from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf
from conftest import once, shared_root

from ranker.artifacts import read_json, write_json
from ranker.models import train
from ranker.serving import client, export

GOOD = dict(variant="additive", epochs=1, batch_size=16, learning_rate=0.02, verbose=0)


def shared_model_dir(tiny_data: str, tmp_path_factory) -> str:
    """The additive model trained for one epoch on tiny_data (small batches so it learns enough for
    the gate's "good" side); trained on the first call of the test run (of any pytest-xdist
    worker), then reused read-only."""
    path = shared_root(tmp_path_factory) / "serving-shared-model"
    with once(path) as done:
        if not done:
            train.train(tiny_data, os.fspath(path), **GOOD)
    return os.fspath(path)


def shared_export(model_dir: str, tmp_path_factory) -> dict:
    """`export.export` of the shared model into a base of its own, once per test run; read-only
    for its users (tests that write verdicts or versions take a copy_of_export or export their own)."""
    path = shared_root(tmp_path_factory) / "serving-shared-export"
    with once(path) as done:
        if not done:
            result = export.export(model_dir, os.fspath(path / "ranker"))
            write_json(os.fspath(path / "export.json"), result)
    return read_json(os.fspath(path / "export.json"))


def config_entries(path: str) -> list[tuple[str, str]]:
    """(name, base path) of each model in a TF Serving models.config."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    with open(path) as fh:
        text_format.Parse(fh.read(), config)
    return [(e.name, e.base_path) for e in config.model_config_list.config]


def copy_of_export(exported: dict, export_base: str) -> dict:
    """The shared export's base copied to `export_base` (same model name, so the same bytes as
    exporting the shared model there): what export.export would return, without its minutes."""
    copied = {**exported, **{key: os.path.join(export_base, os.path.basename(exported[key]))
                             for key in ("export_dir", "models_config", "batching_parameters")}}
    shutil.copytree(exported["export_dir"], copied["export_dir"])  # this version only
    for key in ("models_config", "batching_parameters"):
        shutil.copyfile(exported[key], copied[key])
    return copied


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
