"""Training throughput: additive (two towers) vs naive (relevance tower), and input vs training rate.

    python benchmarks/bench_train.py [--data PREPROCESS_DIR] [--steps 150] [--batch-size 128]

Without --data it writes a tiny-world data folder (tests/conftest.py's generator) with 20k lists.
Training rates are measured on batches cached in memory, so they exclude input; the input rate is
the tf.data pipeline alone (read gzip ELWC → batch → parse → cache), iterated without a model:
the first epoch parses, later ones replay parsed batches.
Targets: additive/naive ≥ 0.90; input rate ≥ 3× the training rate, cached in memory and in
local files (`--input-cache disk`, what `auto` picks for data larger than memory).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tensorflow as tf  # noqa: E402
import training_batches  # noqa: E402
from training_batches import examples_in  # noqa: E402

from ranker.artifacts import TRAIN  # noqa: E402
from ranker.features import spec as fs  # noqa: E402
from ranker.models import data  # noqa: E402
from ranker.models.config import ModelConfig  # noqa: E402
from ranker.models.train import build  # noqa: E402



def training_rate(variant: str, spec, batches, list_size: int, moments: dict, rounds: int) -> float:
    config = ModelConfig(variant=variant, train_list_size=list_size, moments=moments)
    model = build(config, spec)
    model(batches[0])  # variables and optimizers first, as `ranker train` builds them
    model.build_optimizers()
    step = tf.function(model.train_step)
    step(batches[0])  # trace and build outside the timing
    n = examples_in(batches)
    start = time.perf_counter()
    for _ in range(rounds):
        for b in batches:
            step(b)
    return rounds * n / (time.perf_counter() - start)


def input_rates(data_dir: str, spec, list_size: int, batch_size: int, epochs: int,
                cache: bool | str = True) -> list[float]:
    """Examples/s of `ranker train`'s input pipeline, epoch by epoch: with a cache (True: memory, a
    path: local files) the first one parses and later ones replay; without, every epoch parses."""
    ds = data.dataset(data_dir, TRAIN, spec, list_size, batch_size, shuffle=True, cache=cache)
    rates = []
    count_examples = lambda n, b: n + tf.reduce_sum(tf.cast(b[fs.MASK], tf.int64))  # noqa: E731
    for _ in range(epochs):
        start = time.perf_counter()
        # Counted inside the graph, as Keras' fit consumes batches, not batch by batch in Python.
        count = int(ds.reduce(tf.constant(0, tf.int64), count_examples))
        rates.append(count / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data_dir, spec, list_size, batches, moments = training_batches.load(
        args.data, args.steps, args.batch_size, "bench_train_")
    print(f"data: {data_dir}; {len(batches)} batches of {args.batch_size} lists, "
          f"{examples_in(batches)} examples; list size {list_size}")
    naive = training_rate("naive", spec, batches, list_size, moments, args.rounds)
    additive = training_rate("additive", spec, batches, list_size, moments, args.rounds)
    pal = training_rate("pal", spec, batches, list_size, moments, args.rounds)
    first, *later = input_rates(data_dir, spec, list_size, args.batch_size, 3)
    feed = sum(later) / len(later)
    _, *on_disk = input_rates(data_dir, spec, list_size, args.batch_size, 3,
                              cache=os.path.join(tempfile.mkdtemp(prefix="bench_cache_"), "train"))
    disk = sum(on_disk) / len(on_disk)
    parsed = input_rates(data_dir, spec, list_size, args.batch_size, 1, cache=False)[0]
    print(f"training examples/s  naive {naive:,.0f}  additive {additive:,.0f}  pal {pal:,.0f}")
    print(f"ratio additive/naive {additive / naive:.3f}  pal/naive {pal / naive:.3f}  (target ≥ 0.90)")
    print(f"input examples/s: first epoch (read + parse) {first:,.0f}, later epochs (cached) {feed:,.0f}")
    print(f"input/training(additive): first epoch {first / additive:.2f}×, later {feed / additive:.2f}×"
          " (target ≥ 3×)")
    print(f"input cached in local files (--input-cache disk, data larger than memory), later epochs"
          f" {disk:,.0f} examples/s: {disk / additive:.2f}× training (target ≥ 3×)")
    print(f"input parsed every epoch (--input-cache none) {parsed:,.0f} examples/s: {parsed / additive:.2f}×")


if __name__ == "__main__":
    main()
