"""`ranker export`: the relevance tower as a versioned SavedModel TF Serving can poll.

    BASE/<version>/saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests
    BASE/models.config              TF Serving model config: this base's model (base_files.py)
    BASE/batching_parameters.txt    an example for --enable_batching (written once)

Every file lives under BASE (TF Serving's poller ignores non-integer names there); nothing is written
beside it, so exports into sibling bases never touch each other's files.

BASE may be local or on object storage (gs://, s3://; every file goes through tf.io.gfile). A
version is written into a hidden temporary folder BASE/.tmp-<random>/ (TF Serving only loads
integer folder names), checked, and then published (publish.py) so a server polling BASE never
sees half of it: on local disk by one atomic rename to BASE/<version>/; on object storage, which
has no atomic rename, by copying every file to BASE/<version>/ with saved_model.pb LAST (TF
Serving's loader needs it, so whoever finds it finds the complete version) and deleting the
temporary prefix afterwards. The checks, before publishing: no bias-tower variable is tracked by the module or captured by a
signature, the saved checkpoint holds exactly the relevance tower's variables, and the reloaded
`serving_default` and `score_elwc` score the warmup lists as the Keras relevance tower does (a
model whose scores are NaN or infinite is refused as such).

The `position-feature` baseline exports too: its relevance tower scores every candidate at the
fixed serving position with an unknown device, since position and device are not inputs.
"""
from __future__ import annotations

import collections
import logging
import os
import time
import uuid

import numpy as np
import tensorflow as tf

from ranker import storage
from ranker.artifacts import write_json
from ranker.errors import RankerError
from ranker.features import codec
from ranker.features import spec as fs
from ranker.serving import signatures, warmup
from ranker.serving.base_files import model_name, models_config, write_base_files
from ranker.serving.publish import TMP_PREFIX, claim_version

logger = logging.getLogger(__name__)
INFO_FILE = "export_info.json"
SCORE_TOLERANCE = dict(rtol=1e-5, atol=1e-5)



def _built_model(model_dir: str):
    """The trained model with every variable (both towers) created and restored from the same
    checkpoint evaluate reads (the best epoch's when training stopped early)."""
    from ranker.models import checkpoints

    def placeholders(spec):
        if not spec.features:
            raise RankerError(f"{model_dir}: the feature spec declares no features; nothing to serve")
        features = signatures.placeholder_features(spec)
        features[fs.POSITION] = tf.ones([1, 1], tf.int64)
        features[fs.DEVICE] = tf.constant([""])
        return features

    return checkpoints.load_trained(model_dir, build_with=placeholders)


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


def _difference(served: np.ndarray, keras: np.ndarray, signature: str) -> float:
    """max |Δ| of one list's served scores against Keras'; RankerError when they differ."""
    if not np.all(np.isfinite(served)):
        raise RankerError(f"refusing to export: {signature} produced non-finite scores where the Keras"
                          " relevance tower did not")
    if not np.allclose(served, keras, **SCORE_TOLERANCE):
        raise RankerError(f"refusing to export: {signature} scores differ from the Keras relevance tower"
                          f" (max |Δ| {np.max(np.abs(served - keras)):.3g})")
    return float(np.max(np.abs(served - keras), initial=0.0))


def check_scores(saved_dir: str, model, requests, spec: fs.FeatureSpec) -> float:
    """The reloaded serving_default and score_elwc score the requests as the Keras relevance tower;
    max |Δ|. A model whose own scores are NaN or infinite is refused as such."""
    loaded = tf.saved_model.load(saved_dir).signatures
    worst, expected = 0.0, []
    for candidates, context in requests:
        keras = model.relevance_tower(
            {k: tf.constant(v) for k, v in codec.raw_arrays(candidates, context, spec).items()})[0].numpy()
        if not np.all(np.isfinite(keras)):
            raise RankerError("refusing to export: the model produced NaN or infinite scores on the warmup"
                              " lists (training diverged; retrain, e.g. with a lower --learning-rate)")
        examples = tf.constant(codec.serialized_examples(candidates, context, spec))
        served = loaded[signatures.SERVING_DEFAULT](examples=examples)[signatures.SCORES].numpy()
        worst = max(worst, _difference(served, keras, signatures.SERVING_DEFAULT))
        expected.append(keras)
    elwcs = tf.constant([codec.request_elwc(c, ctx, spec).SerializeToString() for c, ctx in requests])
    rows = loaded[signatures.ELWC_SIGNATURE](elwcs=elwcs)[signatures.SCORES].numpy()
    for row, keras in zip(rows, expected):
        if np.any(row[len(keras):] != signatures.PADDING_SCORE):
            raise RankerError(f"refusing to export: {signatures.ELWC_SIGNATURE} scores padding positions")
        worst = max(worst, _difference(row[:len(keras)], keras, signatures.ELWC_SIGNATURE))
    return worst


def _save_version(module, concrete, model, spec, requests, name, tmp_dir) -> dict:
    tf.saved_model.save(module, tmp_dir, signatures=concrete)
    saved_variables = check_saved_variables(tmp_dir, model)
    _, records = warmup.write_warmup(tmp_dir, requests, spec, name)
    max_delta = check_scores(tmp_dir, model, requests, spec)
    spec.save(os.path.join(tmp_dir, warmup.WARMUP_DIR, fs.SPEC_FILENAME))
    return {"variables": saved_variables, "warmup_records": records, "max_abs_score_diff": max_delta}


def export(model_dir: str, export_base: str) -> dict:
    """Writes BASE/<next version>/ with the relevance tower only; returns what was written."""
    started = time.time()
    if storage.exists(export_base) and not storage.isdir(export_base):
        raise RankerError(f"{export_base}: exists and is not a folder")
    name = model_name(export_base)
    base_config = models_config(export_base, name)  # a broken models.config fails before the work
    model, config, spec = _built_model(model_dir)
    module = signatures.build_module(model.relevance_tower, spec)
    concrete = signatures.signatures(module, spec)
    check_relevance_only(module, concrete, model)
    requests, source = warmup.warmup_requests(model_dir, spec, config.moments)

    storage.makedirs(export_base)
    tmp_dir = storage.join(export_base, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        logger.info("saving the relevance tower of %s …", model_dir)
        checks = _save_version(module, concrete, model, spec, requests, name, tmp_dir)
        write_json(os.path.join(tmp_dir, warmup.WARMUP_DIR, INFO_FILE),
                   {"model_dir": storage.absolute(model_dir), "variant": config.variant,
                    "warmup_source": source, **checks})
        version, version_dir = claim_version(tmp_dir, export_base)
    finally:
        storage.rmtree(tmp_dir)
    models_config_path, batching = write_base_files(export_base, base_config)
    logger.info("exported %s", version_dir)
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
            signatures.ELWC_SIGNATURE: {"inputs": {signatures.ELWCS: "string [lists]"},
                                        "outputs": {signatures.SCORES: "float [lists, candidates]"
                                                                       " (-inf past a list's end)"}},
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
