"""Resuming a model dir: only with the same flags and the same data; `--restart` starts afresh.

`ranker train` on a model dir that holds a model_config.json continues its checkpoints. That is
refused with a one-line error, naming what differs, when

* a flag that shapes the model or its training differs from model_config.json (variant, loss,
  learning rates, batch size, dropouts, sizes, seed, split, ips clip and propensities, …): Keras
  would otherwise carry on silently with the stored values;
* the data dir is not the data the model was trained on (`data_fingerprint`: the feature spec,
  the lists per split and preprocess's click statistics).

The epoch budget may change on resume (`--epochs`, `--min-steps`, `--patience`): extending a
finished training is what resuming is for. The new budget is written to model_config.json; the
cosine schedule then spans the new number of steps.

`--restart` deletes what `train` (and `evaluate`'s default metrics.json) wrote into the model dir
(TRAIN_OUTPUTS, nothing else) before training, so the dir is trained from scratch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

from ranker import artifacts, storage
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data
from ranker.models.config import CONFIG_FILE, SPEC_DIR, ModelConfig

logger = logging.getLogger(__name__)

BUDGET = ("min_steps", "patience")  # may change on resume (with train's `epochs` argument)
# stats.json entries that describe the data itself (not the run that wrote it)
_STATS_KEYS = ("impressions_valid", "impressions", "ctr_by_position_device",
               "impressions_by_position_device", "clicks_by_position_device")
ADVICE = "pass --restart to delete its checkpoints and train afresh, or use another --model-dir"


def train_outputs() -> tuple[str, ...]:
    """Entries of a model dir that `train` (and evaluate's default metrics.json) writes."""
    from ranker.models import checkpoints

    return (CONFIG_FILE, SPEC_DIR, checkpoints.CHECKPOINT_DIR, checkpoints.BEST_DIR, checkpoints.BACKUP_DIR,
            checkpoints.STOPPING_FILE, checkpoints.TENSORBOARD_DIR, artifacts.TRAIN_SUMMARY,
            artifacts.METRICS_FILE)


def restart(model_dir: str) -> None:
    """Deletes a model dir's training outputs; a folder that is not a model dir (no
    model_config.json) is left as it is."""
    if not storage.exists(os.path.join(model_dir, CONFIG_FILE)):
        return
    for name in train_outputs():
        storage.rmtree(os.path.join(model_dir, name))
    logger.info("--restart: deleted the checkpoints and config of %s", model_dir)


def check_same_flags(model_dir: str, config: ModelConfig, options: dict) -> None:
    """RankerError naming every option (a ModelConfig field) that differs from the stored config,
    budget fields aside."""
    changed = []
    for name, value in sorted(options.items()):
        if name in BUDGET:
            continue
        stored = getattr(config, name)
        if isinstance(stored, tuple):
            value = tuple(value)
        if value != stored:
            shown = "(another table)" if name == "propensities" else f"{stored!r} (now {value!r})"
            changed.append(f"--{name.replace('_', '-')} {shown}")
    if changed:
        raise RankerError(f"{model_dir} was trained with other flags: {', '.join(changed)}; resume with"
                          f" the same flags, or {ADVICE}")


def apply_budget(config: ModelConfig, options: dict) -> set[str]:
    """Takes the budget fields of `options` into `config`; the names of those that changed."""
    changed = {name for name in BUDGET if name in options and options[name] != getattr(config, name)}
    for name in changed:
        setattr(config, name, options[name])
    if changed:
        config.__post_init__()  # range checks
    return changed


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def data_fingerprint(data_dir: str, spec: fs.FeatureSpec) -> dict:
    """What identifies a preprocess output without reading its records: the resolved feature spec,
    the lists of every split and the click statistics preprocess counted."""
    stats = artifacts.read_json(os.path.join(data_dir, artifacts.STATS_FILE), {}) or {}
    lists = {s: data.num_lists(data_dir, s) for s in artifacts.SPLITS if data.has_split(data_dir, s)}
    return {"feature_spec": _digest(spec.to_json()), "lists": lists,
            "stats": _digest({k: stats[k] for k in _STATS_KEYS if k in stats})}


def check_same_data(model_dir: str, config: ModelConfig, data_dir: str, data_spec: fs.FeatureSpec,
                    trained_spec: fs.FeatureSpec) -> None:
    """RankerError unless `data_dir` is the data the model dir was trained on."""
    check_spec(trained_spec, data_spec, data_dir, model_dir)
    stored = config.data_fingerprint
    if not stored:
        logger.warning("%s predates data fingerprints: resuming without checking its data", model_dir)
        return
    now = data_fingerprint(data_dir, data_spec)
    reasons = []
    if now["feature_spec"] != stored.get("feature_spec"):
        reasons.append("another feature spec")
    if now["lists"] != stored.get("lists"):
        reasons.append(f"lists per split {now['lists']}, not {stored.get('lists')}")
    if now["stats"] != stored.get("stats"):
        reasons.append(f"other click statistics in {artifacts.STATS_FILE}")
    if reasons:
        raise RankerError(f"{model_dir} was trained on other data than {data_dir} ({'; '.join(reasons)});"
                          f" {ADVICE}")


def _signature(feature: fs.Feature) -> str:
    return f"{feature.scope} {feature.kind}" + (f"[{feature.length}]" if feature.kind == fs.VECTOR else "")


def check_spec(model_spec: fs.FeatureSpec, data_spec: fs.FeatureSpec, data_dir: str, model_dir: str) -> None:
    """RankerError unless the data defines every feature the model reads, of the same scope, kind
    and length (parsing would otherwise fill in defaults silently)."""
    have = {f.name: f for f in data_spec.features}
    missing = [f.name for f in model_spec.features if f.name not in have]
    if missing:
        raise RankerError(f"{data_dir} lacks feature(s) {missing} that the model in {model_dir} reads;"
                          " give data preprocessed with the model's feature spec")
    for f in model_spec.features:
        if _signature(f) != _signature(have[f.name]):
            raise RankerError(f"feature {f.name!r} is {_signature(have[f.name])} in {data_dir} but"
                              f" {_signature(f)} in the model in {model_dir}")
