"""`ranker train --strategy`: which tf.distribute strategy trains, and who may write files.

Kept apart from train.py so the single-process path stays readable; everything multi-worker
specific (TF_CONFIG, chief-only writes, data sharding) lives here.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from ranker import storage
from ranker.errors import RankerError
from ranker.models.config import STRATEGIES



def make_strategy(name: str) -> tf.distribute.Strategy:
    """Must run before any other TF op: MultiWorkerMirroredStrategy configures the runtime."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise RankerError("--strategy multi-worker needs TF_CONFIG (cluster and task) in the environment")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as err:
            raise RankerError(f"TF_CONFIG is not valid JSON ({err})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RankerError(f"unknown strategy {name!r}; choose one of {list(STRATEGIES)}")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Task 'chief', or worker 0 in a cluster without one (TF's convention); any single process."""
    return not is_multi_worker(strategy) or strategy.extended.should_checkpoint


def write_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """Where this task writes `path`: the path itself on the chief, a throw-away sibling elsewhere.

    Every worker must take part in a save (variables are read collectively), but only the
    chief's copy is kept; `discard` removes the others afterwards.
    """
    if is_chief(strategy):
        return path
    resolver = strategy.cluster_resolver
    bare = path.rstrip("/") if storage.is_url(path) else os.path.normpath(path)
    parent, base = storage.parent(bare), storage.basename(bare)
    return storage.join(parent, f".{base}-{resolver.task_type}{resolver.task_id}")


def discard(path: str, strategy: tf.distribute.Strategy) -> None:
    if not is_chief(strategy):
        storage.rmtree(write_dir(path, strategy))


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Blocks until every worker gets here (an all-reduce of a constant): after the chief's setup."""
    if is_multi_worker(strategy):
        strategy.reduce(tf.distribute.ReduceOp.SUM,
                        strategy.run(tf.function(lambda: tf.constant(1.0))), axis=None)


def shard_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by element, not by file: preprocess may write a single shard per split."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
