"""tf.data over `preprocess` output: gzip ELWC TFRecords → batches of dense feature dicts.

Batches are formed from serialized records first and parsed as a batch (about 6× faster than
parsing record by record).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from ranker import storage, tfr
from ranker.artifacts import split_files
from ranker.artifacts import EVAL, RECORD_GLOB, STATS_FILE, TRAIN, TRUTH_FILE, read_json
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import distribute, inputs
from ranker.models.options import CACHE_MODES

logger = logging.getLogger(__name__)

DEFAULT_MAX_RELEVANCE = 4.0  # the graded scale's top when the logs come without truth.json
CACHE_MEMORY_SHARE = 0.5  # auto caches when the parsed splits take at most this share of free memory


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


def num_items(data_dir: str, split: str, list_size: int) -> int:
    """Shown items of a split, as stats.json counted them (else its lists × `list_size`)."""
    counted = _stats(data_dir).get("impressions", {}).get(split)
    return int(counted) if counted is not None else num_lists(data_dir, split) * list_size


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
            shuffle: bool = False, seed: int = 0, cache: bool | str = False,
            with_request_id: bool = False, encode=None) -> tf.data.Dataset:
    """Parsed batches of one split; padded slots masked by `fs.MASK`.

    With `cache`, lists are shuffled once, parsed once and kept as parsed batches whose order is
    reshuffled every epoch: after the first epoch input costs little (parsing is otherwise slower
    than a training step of this small model). `cache=True` keeps them in memory; a path keeps
    them in local files there (tf.data's file cache: memory stays flat, for data larger than
    memory). Batch composition then stays fixed across epochs. `encode` (inputs.Encoder) maps each
    parsed batch before the cache.
    """
    files = required_split_files(data_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                 num_parallel_reads=min(len(files), 4))
    if shuffle:
        ds = ds.shuffle(50_000, seed=seed, reshuffle_each_iteration=not cache)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda s: tfr.parse_elwc_batch(s, spec, list_size, with_request_id=with_request_id),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if encode is not None:
        ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache() if cache is True else ds.cache(cache)
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def parsed_bytes(data_dir: str, split: str, spec: fs.FeatureSpec, list_size: int) -> int:
    """Memory the split's parsed lists take once cached, from one parsed batch scaled to the
    split's list count (strings count their bytes)."""
    lists = num_lists(data_dir, split)
    if not lists:
        return 0
    batch = next(iter(dataset(data_dir, split, spec, list_size, min(lists, 256))))
    return int(batch_bytes(batch) * lists / int(tf.shape(batch[fs.MASK])[0]))


def batch_bytes(batch: dict) -> int:
    """Memory of one parsed batch: its tensors' bytes, strings counted by their length."""
    return sum(int(tf.reduce_sum(tf.strings.length(v))) if v.dtype == tf.string else v.numpy().nbytes
               for v in batch.values())


def available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (where there is none, the physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cache_mode(mode: str, needed: int, free: int | None = None) -> str:
    """Where train's parsed batches live: `memory`, `disk` and `none` as told; `auto` keeps them
    in memory when `needed` bytes fit in CACHE_MEMORY_SHARE of the free memory, else on disk."""
    if mode not in CACHE_MODES:
        raise RankerError(f"unknown --input-cache {mode!r}; choose one of {list(CACHE_MODES)}")
    if mode != "auto":
        return mode
    fits = needed <= CACHE_MEMORY_SHARE * (available_memory() if free is None else free)
    return "memory" if fits else "disk"


def training_input(config, data_dir: str, spec: fs.FeatureSpec, mode: str, scratch: str):
    """`train`'s (train batches, eval batches or None) for a ModelConfig: eval only when training on
    `train` beside one.
    Parsed batches are cached in memory when they fit (`mode` auto), else in files under `scratch`."""
    steps = config.steps_per_epoch
    with_eval = config.split == TRAIN and has_split(data_dir, EVAL) and num_lists(data_dir, EVAL)
    splits = [config.split] + ([EVAL] if with_eval else [])
    needed = sum(parsed_bytes(data_dir, s, spec, config.train_list_size) for s in splits) \
        if mode == "auto" else 0
    where = cache_mode(mode, needed)
    logger.info("input: parsed batches cached in %s (--input-cache %s; ~%.0f MiB)", where, mode, needed / 2**20)
    cache = {"memory": lambda split: True, "none": lambda split: False,
             "disk": lambda split: os.path.join(scratch, split)}[where]
    encode = inputs.Encoder(spec)  # strings → ids once, before the cache
    train_ds = dataset(data_dir, config.split, spec, config.train_list_size, config.batch_size,
                       shuffle=True, seed=config.seed, cache=cache(config.split), encode=encode)
    # A known length lets fit resume mid-epoch; every worker sees the same global batches.
    train_ds = distribute.shard_options(_filled(train_ds, where).apply(
        tf.data.experimental.assert_cardinality(steps)))
    eval_ds = None
    if with_eval:
        eval_ds = distribute.shard_options(_filled(dataset(
            data_dir, EVAL, spec, config.train_list_size, config.batch_size, cache=cache(EVAL),
            encode=encode), where))
    return train_ds, eval_ds


def _filled(ds: tf.data.Dataset, where: str) -> tf.data.Dataset:
    """A cached dataset after one full pass: fit reads exactly steps_per_epoch batches an epoch,
    never the end of the data, and tf.data discards a cache whose writer stopped short of it."""
    if where != "none":
        ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)
    return ds


def feature_moments(ds: tf.data.Dataset, spec: fs.FeatureSpec, max_batches: int = 50) -> dict:
    """Mean and std of numeric and vector features over shown candidates (for standardisation):
    {"mean", "std"} of the raw values (the "standard" transform's) and, for every other numeric
    transform t, {t: {"mean", "std"}} of the values after t (inputs.pre_standardise)."""
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
