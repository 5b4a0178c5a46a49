"""`assets.extra/tf_serving_warmup_requests`: PredictionLog records TF Serving replays on load.

Candidates come from real lists of the training data's eval split (the data dir `train` recorded in
`train_summary.json`); where that data is gone, from the spec's vocabularies and feature means.
"""
from __future__ import annotations

import os
from typing import Iterator

import tensorflow as tf
from tensorflow_serving.apis import input_pb2, prediction_log_pb2

from ranker import storage
from ranker.artifacts import EVAL, JUDGED, TRAIN, TRAIN_SUMMARY, read_json, split_files
from ranker.features import codec
from ranker.features import spec as fs
from ranker.serving import client, signatures

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000
DEFAULT_LISTS = 32  # serving_default records; a few score_lists and score_elwc records come on top
RAW_LISTS = 4
ELWC_LISTS = 4
SYNTHETIC_CANDIDATES = 10

Request = tuple[list[dict], dict]  # (candidate dicts, context dict)


def elwc_requests(data_dir: str, spec: fs.FeatureSpec, limit: int,
                  splits=(EVAL, JUDGED, TRAIN)) -> list[Request]:
    """Up to `limit` logged lists as (candidates, context): the first split that has records."""
    for split in splits:
        files = split_files(data_dir, split)
        if not files:
            continue
        requests = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
            elwc = input_pb2.ExampleListWithContext.FromString(record.numpy())
            context = codec.decode_features(spec.context, elwc.context.features.feature)
            candidates = [codec.decode_features(spec.item, ex.features.feature) for ex in elwc.examples]
            if candidates:
                requests.append((candidates, context))
        if requests:
            return requests
    return []


def synthetic_requests(spec: fs.FeatureSpec, moments: dict, lists: int = 2) -> list[Request]:
    """Candidates cycling through each vocabulary (hashed features: made-up values), numbers at
    their training means."""

    def value(feature: fs.Feature, i: int):
        if feature.kind == fs.CATEGORICAL:
            vocab = []
            if feature.uses_vocabulary and storage.exists(spec.vocabulary_path(feature)):
                vocab = fs.read_vocabulary(spec.vocabulary_path(feature))
            return vocab[i % len(vocab)] if vocab else f"warmup-{i}"
        mean = moments.get(feature.name, {}).get("mean")
        if feature.kind == fs.NUMERIC:
            return float(mean or 0.0)
        return [float(v) for v in (mean or [0.0] * feature.length)]

    return [([{f.name: value(f, i + j) for f in spec.item} for i in range(SYNTHETIC_CANDIDATES)],
             {f.name: value(f, j) for f in spec.context})
            for j in range(lists)]


def recorded_data_dir(model_dir: str) -> str | None:
    """The data dir `train` recorded in train_summary.json, when it still exists."""
    data_dir = read_json(os.path.join(model_dir, TRAIN_SUMMARY), {}).get("data_dir")
    return data_dir if data_dir and storage.isdir(data_dir) else None


def warmup_requests(model_dir: str, spec: fs.FeatureSpec, moments: dict,
                    lists: int = DEFAULT_LISTS) -> tuple[list[Request], str]:
    """(requests, where they came from)."""
    data_dir = recorded_data_dir(model_dir)
    if data_dir:
        requests = elwc_requests(data_dir, spec, lists)
        if requests:
            return requests, data_dir
    return synthetic_requests(spec, moments), "synthetic"


def prediction_logs(requests: list[Request], spec: fs.FeatureSpec,
                    model_name: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """One serving_default record per list, then score_lists and score_elwc records for the first
    few lists (every signature is warmed up)."""
    count = 0
    plan = [(signatures.SERVING_DEFAULT, r) for r in requests[:MAX_RECORDS - RAW_LISTS - ELWC_LISTS]]
    plan += [(signatures.RAW_SIGNATURE, r) for r in requests[:RAW_LISTS]]
    plan += [(signatures.ELWC_SIGNATURE, r) for r in requests[:ELWC_LISTS]]
    for signature, (candidates, context) in plan:
        if count >= MAX_RECORDS:
            return
        request = client.grpc_request(candidates, context, spec, model_name, signature)
        yield prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        count += 1


def write_warmup(version_dir: str, requests: list[Request], spec: fs.FeatureSpec,
                 model_name: str) -> tuple[str, int]:
    """Writes the warmup file into `version_dir/assets.extra/`; returns (path, records)."""
    folder = os.path.join(version_dir, WARMUP_DIR)
    storage.makedirs(folder)
    path = os.path.join(folder, WARMUP_FILE)
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for log in prediction_logs(requests, spec, model_name):
            writer.write(log.SerializeToString())
            count += 1
    return path, count


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset([path])]
