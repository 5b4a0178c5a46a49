"""Shared fixtures: a tiny `preprocess`-shaped data folder written directly (no Beam), so model and
serving tests run in seconds. Clicks follow a PBM with a known position bias per device."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ranker.features import spec as fs
from ranker.features.codec import build_elwc

SHARED = Path(__file__).resolve().parents[2] / "shared"
YAHOO = SHARED / "data" / "yahoo_ltr_sample"

TINY_SPEC = {
    "max_list_size": 8,
    "context": [{"name": "intent", "kind": "categorical"}],
    "item": [
        {"name": "category", "kind": "categorical"},
        {"name": "brand", "kind": "categorical", "hash_buckets": 16},
        {"name": "price", "kind": "numeric"},
        {"name": "embedding", "kind": "vector", "length": 3},
    ],
}
DEVICES = ["desktop", "mobile"]
ETA = {"desktop": 0.5, "mobile": 1.5}
INTENTS = ["a", "b", "c"]
CATEGORIES = ["x", "y", "z", "w"]


def _lists(rng: np.random.Generator, n_lists: int, list_size: int, judged: bool):
    for i in range(n_lists):
        intent = INTENTS[rng.integers(len(INTENTS))]
        device = DEVICES[rng.integers(len(DEVICES))]
        impressions = []
        for pos in range(1, list_size + 1):
            cat_id = int(rng.integers(len(CATEGORIES)))
            relevance = float((cat_id == INTENTS.index(intent)) * 3 + rng.integers(2))
            exam = (1.0 / pos) ** ETA[device]
            p_click = 0.05 + 0.95 * (2**relevance - 1) / 15
            clicked = int(rng.random() < exam * p_click)
            impressions.append({
                fs.REQUEST_ID: f"{'j' if judged else 'r'}{i}", fs.POSITION: pos,
                fs.DEVICE: "unknown" if judged else device, fs.ITEM_ID: f"item{i}-{pos}",
                fs.CLICKED: None if judged else clicked, fs.RELEVANCE: relevance,
                "context": {"intent": intent},
                "features": {"category": CATEGORIES[cat_id], "brand": f"b{rng.integers(30)}",
                             "price": float(rng.lognormal()), "embedding": rng.normal(size=3).tolist()},
            })
        yield impressions


def _write(path: Path, lists, spec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for impressions in lists:
            writer.write(build_elwc(impressions, spec).SerializeToString())


def write_tiny_data(root: Path, n_train: int = 600, seed: int = 0) -> Path:
    """train/eval/judged ELWC shards, vocabularies, resolved spec, stats and truth like preprocess."""
    rng = np.random.default_rng(seed)
    spec = fs.parse_spec(TINY_SPEC)
    _write(root / "train" / "part-00000-of-00001.tfrecord.gz", _lists(rng, n_train, 6, False), spec)
    _write(root / "eval" / "part-00000-of-00001.tfrecord.gz", _lists(rng, n_train // 5, 6, False), spec)
    _write(root / "judged" / "part-00000-of-00001.tfrecord.gz", _lists(rng, 40, 8, True), spec)
    vocab = root / fs.VOCAB_DIR
    vocab.mkdir(exist_ok=True)
    (vocab / "intent.txt").write_text("\n".join(INTENTS) + "\n")
    (vocab / "category.txt").write_text("\n".join(CATEGORIES) + "\n")
    (vocab / f"{fs.DEVICE}.txt").write_text("\n".join(DEVICES) + "\n")
    spec.resolved({"intent": 3, "category": 4}).save(str(root / fs.SPEC_FILENAME))
    ctr = {d: {str(p): 0.1 for p in range(1, 7)} for d in DEVICES}
    (root / "stats.json").write_text(json.dumps({"ctr_by_position_device": ctr}))
    truth = {d: [round((1.0 / p) ** ETA[d], 4) for p in range(1, 7)] for d in DEVICES}
    (root / "truth.json").write_text(json.dumps({"propensity": truth, "max_relevance": 4}))
    return root


def shared_root(tmp_path_factory) -> Path:
    """The test run's temp folder: under pytest-xdist each worker has a base temp of its own and
    their parent is the run's, so what is cached there is built once for all workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def once(path: Path):
    """Builds `path` once per test run: holds a lock (other workers wait) and yields whether it was
    built already; a finished build leaves `path`.done, so a failed one is retried, not reused."""
    marker = Path(f"{path}.done")
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists() and path.exists():
            shutil.rmtree(path)  # a build that failed half-way
        yield marker.exists()
        marker.touch()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    path = shared_root(tmp_path_factory) / "tiny_data"
    with once(path) as done:
        if not done:
            write_tiny_data(path)
    return os.fspath(path)


# The serving modules' defaults (a module may define its own): the test run's shared good model,
# and version 1 of its export copied into a base of the module's own, for tests that write
# verdicts or versions (serving_helpers).
@pytest.fixture(scope="module")
def model_dir(tiny_data, tmp_path_factory):
    from serving_helpers import shared_model_dir

    return shared_model_dir(tiny_data, tmp_path_factory)


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
    return os.fspath(tmp_path_factory.mktemp("serving") / "staging" / "ranker")


@pytest.fixture(scope="module")
def exported(model_dir, export_base, tmp_path_factory):
    from serving_helpers import copy_of_export, shared_export

    return copy_of_export(shared_export(model_dir, tmp_path_factory), export_base)


@pytest.fixture(scope="module")
def keras_model(model_dir):
    """The Keras relevance tower of the module's `model_dir` fixture, with its spec."""
    from ranker.serving import export

    model, _, spec = export._built_model(model_dir)
    return model, spec


@pytest.fixture(scope="module")
def lists(tiny_data, keras_model):
    """A few logged lists of the judged split as (candidates, context)."""
    from ranker.serving import warmup

    return warmup.elwc_requests(tiny_data, keras_model[1], 6, splits=("judged",))
