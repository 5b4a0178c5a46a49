"""Training throughput of our relevance tower (DeepFM, `naive` variant) against DeepCTR's DeepFM.

    pip install deepctr   # benchmark-only; not a dependency of the package
    python benchmarks/bench_peer.py [--data PREPROCESS_DIR] [--steps 150] [--rounds 3]

Same data, embedding size 8, DNN (64, 32), Adam, one step = 128 lists (ours, `[lists, list size]`
tensors) or the same examples flattened (DeepCTR, one row per shown candidate). Both step
`tf.function(model.train_step)` over batches cached in memory, so input cost is excluded on both
sides; rounds alternate between the two models so load from other processes hits both alike.
Ours steps on what `ranker train` caches: parsed lists whose categorical strings were turned into
ids once, before the cache (inputs.Encoder; DeepCTR's label encoding is done beforehand too); it
still does in-graph standardisation, broadcasting context features over the list, and masking of
padded slots.
Target: ours ≥ 1.0× DeepCTR's examples/s (no slower at equal model size).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import training_batches  # noqa: E402
from training_batches import examples_in  # noqa: E402

from ranker.features import spec as fs  # noqa: E402
from ranker.models import inputs  # noqa: E402
from ranker.models.config import ModelConfig  # noqa: E402
from ranker.models.train import build  # noqa: E402

EMBEDDING, HIDDEN = 8, (64, 32)


def ours(spec, batches, list_size: int, moments: dict):
    """(train step, batches) of the naive variant: relevance tower only, clicks as labels."""
    config = ModelConfig(variant="naive", embedding_dim=EMBEDDING, hidden_units=HIDDEN,
                         train_list_size=list_size, moments=moments)
    model = build(config, spec)
    encode = inputs.Encoder(spec)  # as `ranker train` steps: categorical ids made once, before its cache
    batches = [encode(b) for b in batches]
    model(batches[0])  # variables and optimizers first, as `ranker train` builds them
    model.build_optimizers()
    return tf.function(model.train_step), batches


def _flat(batch: dict, spec, moments: dict) -> tuple[dict, np.ndarray]:
    """One row per shown candidate: label-encoded categoricals, standardised dense values."""
    mask = batch[fs.MASK].numpy()
    rows, labels = {}, batch[fs.CLICKED].numpy()[mask].astype(np.float32)
    for f in spec.features:
        value = inputs.broadcast_to_list(batch[f.name], tf.shape(batch[fs.MASK])[1],
                                         3 if f.kind == fs.VECTOR else 2).numpy()[mask]
        if f.kind == fs.CATEGORICAL:
            if f.hash_buckets:
                ids = tf.keras.layers.Hashing(num_bins=f.hash_buckets)(value).numpy()
            else:
                index = {v: i + 1 for i, v in enumerate(inputs.vocabulary(spec, f))}
                ids = np.array([index.get(v.decode(), 0) for v in value])
            rows[f.name] = ids.astype(np.int32)
        else:
            stats = moments.get(f.name, {"mean": 0.0, "std": 1.0})
            x = (value - np.asarray(stats["mean"])) / np.where(np.asarray(stats["std"]) > 0,
                                                                stats["std"], 1.0)
            rows[f.name] = x.reshape(len(x), -1).astype(np.float32)
    return rows, labels


def peer(spec, batches, moments: dict):
    """(train step, batches) of DeepCTR's DeepFM on the same examples, flattened."""
    from deepctr.feature_column import DenseFeat, SparseFeat
    from deepctr.models import DeepFM

    columns = []
    for f in spec.features:
        if f.kind == fs.CATEGORICAL:
            size = f.hash_buckets or len(inputs.vocabulary(spec, f)) + 1
            columns.append(SparseFeat(f.name, size, embedding_dim=EMBEDDING))
        else:
            columns.append(DenseFeat(f.name, f.length))
    model = DeepFM(columns, columns, dnn_hidden_units=HIDDEN, seed=0)
    model.compile(tf.keras.optimizers.Adam(3e-3), "binary_crossentropy")
    flat = []
    for b in batches:
        rows, labels = _flat(b, spec, moments)
        flat.append(({k: tf.constant(v) for k, v in rows.items()}, tf.constant(labels[:, None])))
    return tf.function(model.train_step), flat



def timed(step, batches) -> float:
    start = time.perf_counter()
    for b in batches:
        step(b)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="preprocess output (default: a generated tiny world)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128, help="lists per step")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import deepctr  # noqa: F401
    except ImportError:
        sys.exit("DeepCTR is not installed: `pip install deepctr` (0.9.x works with TF 2.15)")
    data_dir, spec, list_size, batches, moments = training_batches.load(
        args.data, args.steps, args.batch_size, "bench_peer_")
    n = examples_in(batches)
    print(f"data: {data_dir}; {len(batches)} steps of {args.batch_size} lists × list size {list_size}"
          f" = {n} examples ({n / len(batches):.0f} a step)")
    models = {"ours": ours(spec, batches, list_size, moments), "deepctr": peer(spec, batches, moments)}
    for step, bs in models.values():
        step(bs[0])  # trace and build outside the timing
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, (step, bs) in models.items():
            seconds[name].append(timed(step, bs))
    rate = {name: n / min(s) for name, s in seconds.items()}  # best round: least disturbed
    print(f"training examples/s (best of {args.rounds} rounds)  ours {rate['ours']:,.0f}"
          f"  DeepCTR DeepFM {rate['deepctr']:,.0f}")
    print(f"ratio ours/DeepCTR {rate['ours'] / rate['deepctr']:.2f}  (target ≥ 1.0)")


if __name__ == "__main__":
    main()
