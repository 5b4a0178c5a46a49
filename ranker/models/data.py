"""tf.data over `preprocess` output: gzip ELWC TFRecords → batches of dense feature dicts.

Batches are formed from serialized records first and parsed as a batch (about 6× faster than
parsing record by record).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from ranker import storage, tfr
from ranker.artifacts import SPLITS, split_files  # noqa: F401  (re-exported)
from ranker.artifacts import RECORD_GLOB, STATS_FILE, TRUTH_FILE, read_json
from ranker.errors import RankerError
from ranker.features import spec as fs

DEFAULT_MAX_RELEVANCE = 4.0  # the graded scale's top when the logs come without truth.json


def has_split(data_dir: str, split: str) -> bool:
    return bool(split_files(data_dir, split))


def required_split_files(data_dir: str, split: str) -> list[str]:
    """split_files, or RankerError when the split has none."""
    files = split_files(data_dir, split)
    if not files:
        raise RankerError(f"{data_dir}/{split}: no {RECORD_GLOB} files; run `ranker preprocess` first")
    return files


def data_spec(data_dir: str) -> fs.FeatureSpec:
    path = os.path.join(data_dir, fs.SPEC_FILENAME)
    if not storage.exists(path):
        raise RankerError(f"{data_dir}: no {fs.SPEC_FILENAME}; is it a `ranker preprocess` output?")
    return fs.load_spec(path)


def _stats(data_dir: str) -> dict:
    return read_json(os.path.join(data_dir, STATS_FILE), {})


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
            shuffle: bool = False, seed: int = 0, cache: bool = False,
            with_request_id: bool = False) -> tf.data.Dataset:
    """Parsed batches of one split; padded slots masked by `fs.MASK`.

    With `cache`, lists are shuffled once, parsed once and kept in memory as parsed batches whose
    order is reshuffled every epoch: after the first epoch input costs next to nothing (parsing
    is otherwise slower than a training step of this small model). Batch composition then stays
    fixed across epochs; for data larger than memory, leave `cache` off.
    """
    files = required_split_files(data_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                 num_parallel_reads=min(len(files), 4))
    if shuffle:
        ds = ds.shuffle(50_000, seed=seed, reshuffle_each_iteration=not cache)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda s: tfr.parse_elwc_batch(s, spec, list_size, with_request_id=with_request_id),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def feature_moments(ds: tf.data.Dataset, spec: fs.FeatureSpec, max_batches: int = 50) -> dict:
    """Mean and std of numeric and vector features over shown candidates (for standardisation):
    {"mean", "std"} of the raw values (the "standard" transform's) and, for every other numeric
    transform t, {t: {"mean", "std"}} of the values after t (inputs.pre_standardise)."""
    from ranker.models import inputs
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
        moments[f.name] = _mean_std(values, f.kind)
        for transform in inputs.NUMERIC_TRANSFORMS:
            if transform != inputs.STANDARD:
                moments[f.name][transform] = _mean_std(inputs.pre_standardise(values, transform), f.kind)
    return moments


def _mean_std(values: np.ndarray, kind: str) -> dict:
    mean, std = values.mean(axis=0), values.std(axis=0)
    if kind == fs.NUMERIC:
        return {"mean": float(mean[0]), "std": float(std[0]) or 1.0}
    return {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


def max_relevance(data_dir: str) -> float:
    """The top of the graded scale, from truth.json when the logs come with it."""
    truth = read_json(os.path.join(data_dir, TRUTH_FILE), {})
    return float(truth.get("max_relevance", DEFAULT_MAX_RELEVANCE))
