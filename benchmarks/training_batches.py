"""What the training benchmarks share: a data folder and in-memory parsed batches to step on."""
from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tensorflow as tf  # noqa: E402

from ranker.artifacts import TRAIN  # noqa: E402
from ranker.features import spec as fs  # noqa: E402
from ranker.models import data  # noqa: E402


def examples_in(batches) -> int:
    return int(sum(tf.reduce_sum(tf.cast(b[fs.MASK], tf.int32)) for b in batches))


def load(data_dir: str | None, steps: int, batch_size: int, prefix: str):
    """(data_dir, spec, list_size, batches, moments); without data_dir, a 20k-list tiny world
    (tests/conftest.py's generator) in a temporary folder removed at exit."""
    if not data_dir:
        from conftest import write_tiny_data

        data_dir = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, data_dir, True)
        write_tiny_data(Path(data_dir), n_train=20_000)
    spec = data.data_spec(data_dir)
    list_size = data.click_list_size(data_dir, spec)
    ds = data.dataset(data_dir, TRAIN, spec, list_size, batch_size, shuffle=True)
    return data_dir, spec, list_size, list(ds.take(steps)), data.feature_moments(ds, spec)
