"""`ranker export`: the relevance tower as a versioned SavedModel TF Serving can poll.

    BASE/<version>/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests
    BASE/../models.config              TF Serving model config (this model entry added/updated)
    BASE/../batching_parameters.txt    an example for --enable_batching (written once)

A version is written into a hidden temporary folder inside BASE (TF Serving only loads integer
folder names), checked, and renamed into place, so a server polling BASE never sees half of it.
The checks, before the rename: no bias-tower variable is tracked by the module or captured by a
signature, the saved checkpoint holds exactly the relevance tower's variables, and the reloaded
`serving_default` scores the warmup lists as the Keras relevance tower does.

The `position-feature` baseline exports too: its relevance tower scores every candidate at the
fixed serving position with an unknown device (SPEC.md), since position and device are not inputs.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import sys
import time
import uuid

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.serving import client, signatures, warmup

TMP_PREFIX = ".tmp-"  # not an integer: TF Serving's version poller skips it
MODELS_CONFIG = "models.config"
BATCHING_FILE = "batching_parameters.txt"
INFO_FILE = "export_info.json"
CONTAINER_MODELS = "/models"  # where the tensorflow/serving image expects model bases
SCORE_TOLERANCE = dict(rtol=1e-5, atol=1e-5)

BATCHING_EXAMPLE = """\
# TF Serving request batching (tensorflow_model_server --enable_batching
#   --batching_parameters_file=THIS_FILE). The relevance tower scores each candidate on its own,
# so batching the `examples` of several requests together leaves every score unchanged.
max_batch_size { value: 1024 }        # candidates per batch (all requests' examples together)
batch_timeout_micros { value: 1000 }  # wait at most 1 ms to fill a batch
max_enqueued_batches { value: 64 }
num_batch_threads { value: 4 }        # ~ the number of CPU cores
pad_variable_length_inputs: true      # score_lists requests of different list sizes
"""


def versions(export_base: str) -> list[int]:
    """The integer version folders of BASE, ascending."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(n) for n in os.listdir(export_base)
                  if n.isdigit() and os.path.isdir(os.path.join(export_base, n)))


def next_version(export_base: str) -> int:
    found = versions(export_base)
    return found[-1] + 1 if found else 1


def model_name(export_base: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(export_base)))


def _built_model(model_dir: str):
    """The trained model with every variable (both towers) created and restored from the checkpoint."""
    from ranker.models import train

    model, config, spec = train.load_trained(model_dir)
    if not spec.features:
        raise RankerError(f"{model_dir}: the feature spec declares no features; nothing to serve")
    features = signatures.placeholder_features(spec)
    features[fs.POSITION] = tf.ones([1, 1], tf.int64)
    features[fs.DEVICE] = tf.constant([""])
    model(features, training=False)  # creates variables; the deferred restore fills them
    latest = train.checkpoint_manager(model, model_dir).latest_checkpoint
    status = tf.train.Checkpoint(model=model).restore(latest)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise RankerError(f"{model_dir}: checkpoint does not match the model ({str(err)[:200]})") from None
    status.expect_partial()  # optimizer slots are in the checkpoint, not needed here
    return model, config, spec


def _refs(variables) -> set:
    return {v.ref() for v in variables}


def check_relevance_only(module: tf.Module, concrete: dict, model) -> None:
    """RankerError unless the module tracks, and the signatures capture, relevance-tower variables only."""
    bias = _refs(model.bias_tower.variables) if model.bias_tower is not None else set()
    tower = _refs(model.relevance_tower.variables)
    tracked = _refs(module.variables)
    if tracked & bias:
        raise RankerError(f"refusing to export: {len(tracked & bias)} bias-tower variable(s) are tracked"
                          " by the serving module")
    if tracked - tower:
        raise RankerError(f"refusing to export: {len(tracked - tower)} variable(s) outside the relevance"
                          " tower are tracked by the serving module")
    for name, fn in concrete.items():
        captured = _refs(fn.variables)
        if captured & bias or captured - tower:
            raise RankerError(f"refusing to export: signature {name!r} reads variables outside the"
                              " relevance tower")


def check_saved_variables(saved_dir: str, model) -> int:
    """RankerError unless the SavedModel's checkpoint holds exactly the relevance tower's variables."""
    saved = [(k, tuple(shape)) for k, shape in
             tf.train.list_variables(os.path.join(saved_dir, "variables", "variables"))
             if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    if any("bias_tower" in key for key, _ in saved):
        raise RankerError(f"refusing to export: {saved_dir} holds bias-tower variables")
    want = collections.Counter(tuple(v.shape.as_list()) for v in model.relevance_tower.variables)
    got = collections.Counter(shape for _, shape in saved)
    if got != want:
        raise RankerError(f"refusing to export: {saved_dir} holds {sum(got.values())} variables, the"
                          f" relevance tower {sum(want.values())}")
    return len(saved)


def check_scores(saved_dir: str, model, requests, spec: fs.FeatureSpec) -> float:
    """The reloaded serving_default scores the requests as the Keras relevance tower; max |Δ|."""
    serve = tf.saved_model.load(saved_dir).signatures[signatures.SERVING_DEFAULT]
    worst = 0.0
    for candidates, context in requests:
        served = serve(examples=tf.constant(client.serialized_examples(candidates, context, spec)))
        keras = model.relevance_tower(
            {k: tf.constant(v) for k, v in client.raw_arrays(candidates, context, spec).items()})[0]
        served = served[signatures.SCORES].numpy()
        if not np.allclose(served, keras.numpy(), **SCORE_TOLERANCE):
            raise RankerError(f"refusing to export: served scores differ from the Keras relevance tower"
                              f" (max |Δ| {np.max(np.abs(served - keras.numpy())):.3g})")
        worst = max(worst, float(np.max(np.abs(served - keras.numpy()), initial=0.0)))
    return worst


def models_config(export_base: str, name: str) -> tuple[str, str]:
    """(path, text) of BASE's parent models.config with this model's entry added or updated."""
    path = os.path.join(os.path.dirname(os.path.abspath(export_base)), MODELS_CONFIG)
    config = model_server_config_pb2.ModelServerConfig()
    if os.path.exists(path):
        try:
            with open(path) as fh:
                text_format.Parse(fh.read(), config)
        except text_format.ParseError as err:
            raise RankerError(f"{path}: not a TF Serving model config ({err}); fix or remove it") from None
    entries = config.model_config_list.config
    entry = next((c for c in entries if c.name == name), None) or entries.add()
    entry.name = name
    entry.base_path = f"{CONTAINER_MODELS}/{name}"
    entry.model_platform = "tensorflow"
    header = (f"# TF Serving model config (--model_config_file). base_path is the container path:\n"
              f"# mount {os.path.dirname(os.path.abspath(export_base))} at {CONTAINER_MODELS}, or edit"
              f" it to {os.path.abspath(export_base)} for a local tensorflow_model_server.\n")
    return path, header + text_format.MessageToString(config)


def write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _save_version(module, concrete, model, spec, requests, name, tmp_dir) -> dict:
    tf.saved_model.save(module, tmp_dir, signatures=concrete)
    saved_variables = check_saved_variables(tmp_dir, model)
    _, records = warmup.write_warmup(tmp_dir, requests, spec, name)
    max_delta = check_scores(tmp_dir, model, requests, spec)
    spec.save(os.path.join(tmp_dir, warmup.WARMUP_DIR, fs.SPEC_FILENAME))
    return {"variables": saved_variables, "warmup_records": records, "max_abs_score_diff": max_delta}


def claim_version(tmp_dir: str, export_base: str) -> tuple[int, str]:
    """Renames tmp_dir to the next free version; retries if a concurrent export took it."""
    for _ in range(20):
        version = next_version(export_base)
        target = os.path.join(export_base, str(version))
        try:
            os.rename(tmp_dir, target)  # fails if target exists (non-empty) or was just created
            return version, target
        except OSError:
            if not os.path.exists(target):
                raise
    raise RankerError(f"{export_base}: could not claim a version folder")


def export(model_dir: str, export_base: str) -> dict:
    """Writes BASE/<next version>/ with the relevance tower only; returns what was written."""
    started = time.time()
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise RankerError(f"{export_base}: exists and is not a folder")
    name = model_name(export_base)
    models_config_path, models_config_text = models_config(export_base, name)
    model, config, spec = _built_model(model_dir)
    module = signatures.build_module(model.relevance_tower, spec)
    concrete = signatures.signatures(module, spec)
    check_relevance_only(module, concrete, model)
    requests, source = warmup.warmup_requests(model_dir, spec, config.moments)

    os.makedirs(export_base, exist_ok=True)
    tmp_dir = os.path.join(export_base, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        print(f"saving the relevance tower of {model_dir} …", file=sys.stderr)
        checks = _save_version(module, concrete, model, spec, requests, name, tmp_dir)
        with open(os.path.join(tmp_dir, warmup.WARMUP_DIR, INFO_FILE), "w") as fh:
            json.dump({"model_dir": os.path.abspath(model_dir), "variant": config.variant,
                       "warmup_source": source, **checks}, fh, indent=2)
        version, version_dir = claim_version(tmp_dir, export_base)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    write_atomically(models_config_path, models_config_text)
    batching = os.path.join(os.path.dirname(models_config_path), BATCHING_FILE)
    if not os.path.exists(batching):
        write_atomically(batching, BATCHING_EXAMPLE)
    print(f"exported {version_dir}", file=sys.stderr)
    return {
        "export_dir": version_dir,
        "version": version,
        "model_name": name,
        "variant": config.variant,
        "signatures": {
            signatures.SERVING_DEFAULT: {"inputs": {signatures.EXAMPLES: "string [N]"},
                                         "outputs": {signatures.SCORES: "float [N]"}},
            signatures.RAW_SIGNATURE: {"inputs": {f.name: _describe(f) for f in spec.features},
                                       "outputs": {signatures.SCORES: "float [lists, candidates]"}},
        },
        "warmup": {"records": checks["warmup_records"], "source": source},
        "variables": checks["variables"],
        "max_abs_score_diff": checks["max_abs_score_diff"],
        "models_config": models_config_path,
        "batching_parameters": batching,
        "seconds": round(time.time() - started, 1),
    }


def _describe(feature: fs.Feature) -> str:
    dtype = "string" if feature.kind == fs.CATEGORICAL else "float"
    return f"{dtype} [lists, candidates{', ' + str(feature.length) if feature.kind == fs.VECTOR else ''}]"
