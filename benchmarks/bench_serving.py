"""Latency of the served relevance tower vs the full two-tower click model, on one CPU thread.

One request = N candidates (default 100) as serialized tf.Examples. Timed, each end to end from the
serialized examples (parse + score + result to numpy):

- served:    the exported SavedModel's `serving_default` (relevance tower only), loaded as TF
             Serving loads it;
- two-tower: a tf.function over the Keras model's `click_log_probs` (relevance + bias towers), fed
             the same candidates with position and device added to each example;
- for reference, the relevance tower in the same in-process tf.function (separates the bias
  tower's cost from SavedModel-vs-Keras effects).

Targets: served p50 < 5 ms and two-tower / served ≥ 1.2×.

    .venv/bin/python benchmarks/bench_serving.py                   # trains a small model first
    .venv/bin/python benchmarks/bench_serving.py --model-dir DIR   # a trained two-tower model dir
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

# One thread, before anything runs.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ranker.features import spec as fs  # noqa: E402
from ranker.features import tensors  # noqa: E402
from ranker.features import codec  # noqa: E402
from ranker.serving import client, export, warmup  # noqa: E402


def small_model(workdir: str) -> str:
    """Tiny synthetic data (tests/conftest.py) and an additive model trained on it for one epoch."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_tiny_data

    from ranker.models import train

    data_dir = write_tiny_data(Path(workdir) / "data")
    model_dir = os.path.join(workdir, "model")
    train.train(os.fspath(data_dir), model_dir, variant="additive", epochs=1, verbose=0)
    return model_dir


def request_candidates(model_dir: str, spec: fs.FeatureSpec, n: int, moments: dict):
    """n candidates (logged ones, repeated as needed) and one context."""
    requests, _ = warmup.warmup_requests(model_dir, spec, moments, lists=64)
    pool = [c for candidates, _ in requests for c in candidates]
    return [pool[i % len(pool)] for i in range(n)], requests[0][1]


def keras_scorer(model, spec: fs.FeatureSpec, two_tower: bool):
    """In-process tf.function from serialized examples: the full click model, or relevance only."""
    parse_spec = dict(tensors.serving_parse_spec(spec))
    if two_tower:
        parse_spec[fs.POSITION] = tf.io.FixedLenFeature([], tf.int64, default_value=fs.PADDING_POSITION)
        parse_spec[fs.DEVICE] = tf.io.FixedLenFeature([], tf.string, default_value="")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def score(examples):
        parsed = tf.io.parse_example(examples, parse_spec)
        features = {k: tf.expand_dims(v, 0) for k, v in parsed.items()}
        features[fs.MASK] = tf.ones([1, tf.size(examples)], tf.bool)
        if not two_tower:
            return model.relevance_tower(features)[0]
        features[fs.DEVICE] = parsed[fs.DEVICE][:1]  # the request's device, [1]
        log_p, _ = model.click_log_probs(features, training=False)
        return tf.exp(log_p)[0]

    return score


def two_tower_examples(candidates, context, spec, device: str) -> list[bytes]:
    out = []
    for i, candidate in enumerate(candidates):
        example = codec.serving_example(candidate, context, spec)
        example.features.feature[fs.POSITION].int64_list.value.append(i + 1)
        example.features.feature[fs.DEVICE].bytes_list.value.append(device.encode())
        out.append(example.SerializeToString())
    return out


def latency_ms(fn, examples: tf.Tensor, iterations: int, warmup_calls: int) -> np.ndarray:
    for _ in range(warmup_calls):
        fn(examples)
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        fn(examples).numpy()
        times[i] = time.perf_counter() - start
    return times * 1000.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="a trained pal/additive model dir (default: train one)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        model_dir = args.model_dir or small_model(workdir)
        exported = export.export(model_dir, os.path.join(workdir, "export", "ranker"))
        model, config, spec = export._built_model(model_dir)
        if model.bias_tower is None:
            parser.error(f"{model_dir} is a {config.variant!r} model; the comparison needs a bias tower")
        candidates, context = request_candidates(model_dir, spec, args.candidates, config.moments)

        served_fn = tf.saved_model.load(exported["export_dir"]).signatures["serving_default"]
        served_examples = tf.constant(client.serialized_examples(candidates, context, spec))
        full_fn = keras_scorer(model, spec, two_tower=True)
        full_examples = tf.constant(two_tower_examples(candidates, context, spec, model.devices[0]))
        tower_fn = keras_scorer(model, spec, two_tower=False)

        served = latency_ms(lambda x: served_fn(examples=x)["scores"], served_examples,
                            args.iterations, args.warmup)
        full = latency_ms(full_fn, full_examples, args.iterations, args.warmup)
        tower = latency_ms(tower_fn, served_examples, args.iterations, args.warmup)

    rows = [("served relevance tower (SavedModel serving_default)", served),
            ("full two-tower model (click_log_probs tf.function)", full),
            ("for reference: relevance tower, same in-process tf.function", tower)]
    print(f"{args.candidates} candidates per request, {args.iterations} requests, 1 intra-op and"
          f" 1 inter-op thread, variant {config.variant}")
    for name, times in rows:
        print(f"  {name:60s} p50 {np.percentile(times, 50):7.3f} ms   p99 {np.percentile(times, 99):7.3f} ms")
    ratio50 = np.percentile(full, 50) / np.percentile(served, 50)
    ratio99 = np.percentile(full, 99) / np.percentile(served, 99)
    print(f"  two-tower / served: p50 {ratio50:.2f}×, p99 {ratio99:.2f}×")
    ok = np.percentile(served, 50) < 5.0 and ratio50 >= 1.2
    print(f"targets (served p50 < 5 ms, ≥ 1.2× faster): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
