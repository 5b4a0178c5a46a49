"""tf.data over `preprocess` output: gzip ELWC TFRecords → batches of dense feature dicts.

Batches are formed from serialized records first and parsed as a batch (about 6× faster than
parsing record by record).
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import tensorflow as tf

from ranker import tfr
from ranker.errors import RankerError
from ranker.features import spec as fs

SPLITS = ("train", "eval", "judged")


def split_files(data_dir: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(data_dir, split, "*.tfrecord.gz")))


def has_split(data_dir: str, split: str) -> bool:
    return bool(split_files(data_dir, split))


def data_spec(data_dir: str) -> fs.FeatureSpec:
    path = os.path.join(data_dir, fs.SPEC_FILENAME)
    if not os.path.exists(path):
        raise RankerError(f"{data_dir}: no {fs.SPEC_FILENAME}; is it a `ranker preprocess` output?")
    return fs.load_spec(path)


def _stats(data_dir: str) -> dict:
    path = os.path.join(data_dir, "stats.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def num_lists(data_dir: str, split: str) -> int:
    """Lists of a split (fit needs steps per epoch to resume mid-epoch): preprocess counted them
    in stats.json; only without it are the records read and counted."""
    counted = _stats(data_dir).get("requests", {}).get(split)
    return int(counted) if counted is not None else count_lists(data_dir, split)


def count_lists(data_dir: str, split: str) -> int:
    """Records of a split, by reading them (no parse)."""
    files = split_files(data_dir, split)
    if not files:
        return 0
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", buffer_size=1 << 20)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def click_list_size(data_dir: str, spec: fs.FeatureSpec) -> int:
    """Longest clicked list: the deepest position in stats.json's CTR table (else the spec cap)."""
    ctr = _stats(data_dir).get("ctr_by_position_device", {})
    positions = [int(p) for curve in ctr.values() for p in curve]
    return min(max(positions), spec.max_list_size) if positions else spec.max_list_size


def dataset(data_dir: str, split: str, spec: fs.FeatureSpec, list_size: int, batch_size: int,
            shuffle: bool = False, seed: int = 0, cache: bool = False) -> tf.data.Dataset:
    """Parsed batches of one split; padded slots masked by `fs.MASK`.

    With `cache`, lists are shuffled once, parsed once and kept in memory as parsed batches whose
    order is reshuffled every epoch: after the first epoch input costs next to nothing (parsing
    is otherwise slower than a training step of this small model). Batch composition then stays
    fixed across epochs; for data larger than memory, leave `cache` off.
    """
    files = split_files(data_dir, split)
    if not files:
        raise RankerError(f"{data_dir}/{split}: no *.tfrecord.gz files; run `ranker preprocess` first")
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                 num_parallel_reads=min(len(files), 4))
    if shuffle:
        ds = ds.shuffle(50_000, seed=seed, reshuffle_each_iteration=not cache)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda s: tfr.parse_elwc_batch(s, spec, list_size),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def feature_moments(ds: tf.data.Dataset, spec: fs.FeatureSpec, max_batches: int = 50) -> dict:
    """Mean and std of numeric and vector features over shown candidates (for standardisation)."""
    wanted = [f for f in spec.features if f.kind in (fs.NUMERIC, fs.VECTOR)]
    if not wanted:
        return {}
    sums: dict[str, list[np.ndarray]] = {f.name: [] for f in wanted}
    for batch in ds.take(max_batches):
        mask = batch[fs.MASK].numpy()
        for f in wanted:
            value = batch[f.name].numpy()
            rows = value if f.scope == fs.CONTEXT else value[mask]
            sums[f.name].append(rows.reshape(len(rows), -1))
    moments = {}
    for f in wanted:
        values = np.concatenate(sums[f.name]) if sums[f.name] else np.zeros((1, f.length))
        mean, std = values.mean(axis=0), values.std(axis=0)
        if f.kind == fs.NUMERIC:
            moments[f.name] = {"mean": float(mean[0]), "std": float(std[0]) or 1.0}
        else:
            moments[f.name] = {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}
    return moments


def max_relevance(data_dir: str) -> float:
    """The top of the graded scale, from truth.json when the logs come with it."""
    path = os.path.join(data_dir, "truth.json")
    if os.path.exists(path):
        with open(path) as fh:
            return float(json.load(fh).get("max_relevance", 4.0))
    return 4.0
