"""`ranker train`: one variant on `preprocess` output, with a step budget, early stopping on held-out
click log-loss, checkpoints, resume and TensorBoard.

Epochs: `epochs` is the maximum; without it, schedule.plan_epochs gives small data at least
`min_steps` optimizer steps. With an eval split (training on `train`) and `patience` > 0, training
stops after `patience` epochs without a lower eval click log-loss (pointwise BCE of the variant's
full click model, whatever the training loss), and the best epoch is what `load_trained` restores.
Without an eval split (e.g. the oracle on `judged`) every epoch of the plan runs.

An existing model dir is resumed only with the same flags and data (resume.py; `restart` trains
afresh). A loss or weights that stop being finite end training with a RankerError before that
epoch is checkpointed (checkpoints.FiniteGuard); train_summary.json is then not written.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
import time

import tensorflow as tf

from ranker.artifacts import EVAL, JUDGED, RECORD_GLOB, STATS_FILE, TRAIN, TRAIN_SUMMARY, write_json
from ranker import storage
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data, distribute, ips, prior, resume, schedule
from ranker.models.checkpoints import (  # noqa: F401  (re-exported: tests and other modules use them)
    BACKUP_DIR, BEST_DIR, CHECKPOINT_DIR, STOPPING_FILE, TENSORBOARD_DIR, BestCheckpoint,
    EpochCheckpoint, FiniteGuard, backup_position, best_epoch, checkpoint_manager, drop_stale_backup,
    first_line, load_trained, read_stopping, restore, should_stop)
from ranker.models.config import CONFIG_FILE, ModelConfig, copy_spec_into, model_spec
from ranker.models.options import TrainOptions
from ranker.models.schedule import build  # noqa: F401  (re-exported)
from ranker.models.two_tower import RankingModel

logger = logging.getLogger(__name__)

def check_split(data_dir: str, split: str, variant: str, spec) -> None:
    """Refuses a split that does not exist, clicks-less `judged` for click variants, and the
    oracle on a split without relevance labels, and an empty split."""
    if not data.has_split(data_dir, split):
        raise RankerError(f"{data_dir}: no split {split!r} (no {split}/{RECORD_GLOB})")
    if data.num_lists(data_dir, split) == 0:
        raise RankerError(f"{data_dir}: split {split!r} holds no lists; nothing to train on")
    if split == JUDGED and variant != "oracle":
        raise RankerError(f"--split {JUDGED} holds no clicks; only --variant oracle trains on it")
    if variant == "oracle":
        list_size = spec.max_list_size
        batch = next(iter(data.dataset(data_dir, split, spec, list_size, 256)))
        if not bool(tf.reduce_any(batch[fs.MASK] & (batch[fs.RELEVANCE] >= 0))):
            raise RankerError(f"--variant oracle needs relevance labels; split {split!r} has none")


def _new_config(data_dir: str, spec, options: dict, epochs: int | None) -> ModelConfig:
    """The config of a fresh model dir (data_fingerprint is set by the caller)."""
    config = ModelConfig(**options)
    config.train_list_size = (spec.max_list_size if config.split == JUDGED
                              else data.click_list_size(data_dir, spec))
    sample = data.dataset(data_dir, config.split, spec, config.train_list_size, config.batch_size)
    config.moments = data.feature_moments(sample, spec)
    _check_moments(config.moments, data_dir, config.split)
    config.max_relevance = data.max_relevance(data_dir)
    config.steps_per_epoch = math.ceil(data.num_lists(data_dir, config.split) / config.batch_size)
    config.epochs = schedule.plan_epochs(config.steps_per_epoch, epochs, config.min_steps)
    config.train_items = data.num_items(data_dir, config.split, config.train_list_size)
    if config.variant == "pal" and config.has_bias_tower and config.propensity_prior_weight > 0:
        config.propensity_prior = prior.harvested_prior(data_dir)
    return config


def _check_moments(moments: dict, data_dir: str, split: str) -> None:
    """NaN or values beyond float32 in the data make every loss NaN: refused up front."""
    bad = [name for name, m in sorted(moments.items())
           if not all(math.isfinite(v) for v in _numbers(m))]
    if bad:
        raise RankerError(f"{data_dir}/{split}: feature(s) {bad} hold NaN or values beyond float32;"
                          " fix the logs or drop the feature from the spec")


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [float(value)]


def _with_propensities(data_dir: str, options: dict, propensity_file: str | None) -> dict:
    """ips always takes propensities; pal takes them in place of its bias tower when given."""
    if options["variant"] == "ips" or (options["variant"] == "pal" and propensity_file):
        if options["variant"] == "pal" and options.get("loss") == "listwise":
            raise RankerError("pal with --propensities trains on the click likelihood: --loss pointwise only")
        options = dict(options)
        options["propensities"], options["propensity_source"] = ips.load_propensities(data_dir, propensity_file)
    elif propensity_file:
        raise RankerError("--propensities is for --variant ips or pal only")
    return options


def _prepare(model_dir: str, data_dir: str, options: dict, epochs: int | None,
             propensity_file: str | None, restart: bool = False) -> tuple[ModelConfig, object]:
    """A fresh model dir gets config + spec copy; an existing one is resumed if it matches."""
    if restart:
        resume.restart(model_dir)
    data_spec = data.data_spec(data_dir)
    if not storage.exists(os.path.join(data_dir, STATS_FILE)):
        raise RankerError(f"{data_dir}: no {STATS_FILE}, so the `ranker preprocess` run that wrote it did"
                          " not finish; run it again")
    options = _with_propensities(data_dir, options, propensity_file)
    if storage.exists(os.path.join(model_dir, CONFIG_FILE)):
        return _resumed(model_dir, data_dir, data_spec, options, epochs)
    check_split(data_dir, options.get("split", TRAIN), options["variant"], data_spec)
    storage.makedirs(model_dir)
    spec = copy_spec_into(model_dir, data_spec)
    config = _new_config(data_dir, spec, options, epochs)
    config.data_fingerprint = resume.data_fingerprint(data_dir, data_spec)
    config.save(model_dir)
    return config, spec


def _resumed(model_dir: str, data_dir: str, data_spec, options: dict, epochs: int | None):
    """The stored config and spec, once flags and data are checked against them; a new epoch
    budget (epochs, min_steps, patience) is taken and saved."""
    config, spec = ModelConfig.load(model_dir), model_spec(model_dir)
    resume.check_same_flags(model_dir, config, {k: v for k, v in options.items() if k != "propensity_source"})
    resume.check_same_data(model_dir, config, data_dir, data_spec, spec)
    check_split(data_dir, config.split, config.variant, spec)
    changed = resume.apply_budget(config, options)
    if epochs is not None or "min_steps" in changed:
        config.epochs = schedule.plan_epochs(config.steps_per_epoch, epochs, config.min_steps)
    if changed or epochs is not None:
        config.save(model_dir)
    return config, spec


def _built(config: ModelConfig, spec, data_dir: str) -> RankingModel:
    """Model and optimizer variables created now, so the two restores (epoch checkpoint, then
    BackupAndRestore's at fit start) apply at once and in that order, not deferred."""
    model = build(config, spec)
    model(next(iter(data.dataset(data_dir, config.split, spec, config.train_list_size, 2))))
    model.build_optimizers()
    return model


def _callbacks(model, model_dir: str, dist, config: ModelConfig, history: list, stopping: bool,
               backup_every: int) -> list:
    checkpoints, best = os.path.join(model_dir, CHECKPOINT_DIR), os.path.join(model_dir, BEST_DIR)
    manager = checkpoint_manager(model, model_dir, directory=distribute.write_dir(checkpoints, dist))
    # Keras writes TensorBoard logs and backups of non-chief workers to temporary dirs itself.
    # FiniteGuard first: it raises before any checkpoint of a diverged epoch is written
    callbacks = [FiniteGuard(), EpochCheckpoint(manager, after=lambda: distribute.discard(checkpoints, dist)),
                 tf.keras.callbacks.TensorBoard(os.path.join(model_dir, TENSORBOARD_DIR), profile_batch=0)]
    if stopping:
        best_manager = checkpoint_manager(model, model_dir, max_to_keep=1,
                                          directory=distribute.write_dir(best, dist))
        state = os.path.join(model_dir, STOPPING_FILE) if distribute.is_chief(dist) else None
        callbacks.append(BestCheckpoint(best_manager, state, config.patience, history,
                                        after=lambda: distribute.discard(best, dist)))
    if backup_every:
        callbacks.append(tf.keras.callbacks.BackupAndRestore(os.path.join(model_dir, BACKUP_DIR),
                                                             save_freq=backup_every))
    return callbacks


def train(data_dir: str, model_dir: str, **options) -> dict:
    """Trains one variant (TrainOptions.of: the job's options by name, ModelConfig fields else).
    An existing model dir is resumed (same flags and data only); `restart` deletes its training
    outputs first."""
    return run(TrainOptions.of(data_dir, model_dir, **options))


def run(opts: TrainOptions) -> dict:
    opts.check()  # every flag range-checked before anything runs
    data_dir, model_dir, epochs = opts.data_dir, opts.model_dir, opts.epochs
    options = opts.config_fields()
    dist = distribute.make_strategy(opts.strategy)  # first: multi-worker configures the TF runtime
    chief = distribute.is_chief(dist)
    tf.keras.utils.set_random_seed(options.get("seed", 0))
    if chief:
        config, spec = _prepare(model_dir, data_dir, options, epochs, opts.propensities, opts.restart)
        drop_stale_backup(model_dir)
    distribute.barrier(dist)  # workers read the model dir only once the chief has written it
    if not chief:
        config, spec = ModelConfig.load(model_dir), model_spec(model_dir)
        if epochs is not None:
            config.epochs = schedule.plan_epochs(config.steps_per_epoch, epochs, config.min_steps)
    with tempfile.TemporaryDirectory(prefix="ranker-input-") as scratch:  # a disk cache's, local
        summary = _trained(opts, config, spec, dist, scratch)
    if chief:
        write_json(os.path.join(model_dir, TRAIN_SUMMARY), summary)
    return summary


def _trained(opts: TrainOptions, config: ModelConfig, spec, dist, scratch: str) -> dict:
    """Builds, restores and fits the model, restores its best epoch; the training summary."""
    data_dir, model_dir = opts.data_dir, opts.model_dir
    train_ds, eval_ds = data.training_input(config, data_dir, spec, opts.input_cache, scratch)
    with dist.scope():
        model = _built(config, spec, data_dir)
    initial_epoch = restore(model, model_dir, optimizer_too=True)  # every worker reads the chief's
    stopping = eval_ds is not None and config.patience > 0
    history = read_stopping(model_dir, initial_epoch) if stopping else []
    summary = _fit(model, config, model_dir, dist, train_ds, eval_ds, initial_epoch, history,
                   stopping, opts.verbose, opts.backup_every)
    summary.update(data_dir=storage.absolute(data_dir), strategy=opts.strategy)
    if stopping:
        distribute.barrier(dist)  # the chief's last best/ save is complete before anyone reads it
        restore(model, model_dir, best=True)
    reference = None
    if model.bias_tower is not None:  # only a learned curve is read at a reference item
        reference = model.reference_logit(data.dataset(data_dir, EVAL if eval_ds is not None else config.split,
                                                       spec, config.train_list_size, config.batch_size))
    summary["propensity_reference_logit"] = None if reference is None else round(reference, 5)
    summary["propensity"] = model.propensity(config.train_list_size, reference)
    return summary


class _QuietKeras(logging.Filter):
    """Drops Keras's "Callback method `on_train_batch_end` is slow compared to the batch time"
    (a checkpoint or backup write beside a millisecond step: expected, not a problem)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is slow compared to the batch time" not in record.getMessage()


def _run_fit(model, train_ds, **kwargs):
    """model.fit with progress on stderr (the JSON result goes to stdout), the slow-callback
    warning silenced, and unreadable records as one-line errors."""
    quiet, tf_logger = _QuietKeras(), logging.getLogger("tensorflow")
    tf_logger.addFilter(quiet)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return model.fit(train_ds, **kwargs)
    except tf.errors.DataLossError as err:
        raise RankerError(f"a record file of the data is corrupt or truncated ({first_line(err)})") from None
    except tf.errors.InvalidArgumentError as err:
        if "expected to contain" not in str(err):
            raise
        raise RankerError(f"the data holds fewer lists than {STATS_FILE} counts ({first_line(err)});"
                          " run `ranker preprocess` again") from None
    finally:
        tf_logger.removeFilter(quiet)


def _fit(model, config: ModelConfig, model_dir: str, dist, train_ds, eval_ds, initial_epoch: int,
         history: list, stopping: bool, verbose: int, backup_every: int) -> dict:
    """Runs (or resumes) fit; the summary of what ran."""
    if initial_epoch:
        logger.info("resuming %s after epoch %d", model_dir, initial_epoch)
    done = initial_epoch >= config.epochs or (stopping and should_stop(history, config.patience))
    backup = None if done else backup_position(os.path.join(model_dir, BACKUP_DIR))
    if backup:
        logger.info("resuming %s from its backup in epoch %d, batch %d", model_dir, backup[0] + 1, backup[1] + 1)
    callbacks = _callbacks(model, model_dir, dist, config, history, stopping, backup_every)
    started, fitted = time.time(), {}
    if not done:
        fit = _run_fit(model, train_ds, validation_data=eval_ds, epochs=config.epochs,
                       steps_per_epoch=config.steps_per_epoch, initial_epoch=initial_epoch,
                       callbacks=callbacks, verbose=verbose)
        fitted = {k: [round(float(v), 5) if math.isfinite(v) else None for v in vs]
                  for k, vs in fit.history.items()}
    val = next((c.history for c in callbacks if isinstance(c, BestCheckpoint)), [])
    return {
        "model_dir": model_dir,
        "variant": config.variant,
        "loss": config.loss,
        "split": config.split,
        "epochs": config.epochs,
        "steps_per_epoch": config.steps_per_epoch,
        "epochs_trained": initial_epoch + len(fitted.get("loss", [])),
        "best_epoch": best_epoch(val) if stopping else None,
        "stopped_early": bool(stopping and should_stop(val, config.patience) and len(val) < config.epochs),
        "val_click_log_loss": val,
        "replicas": dist.num_replicas_in_sync,
        "resumed_from_epoch": initial_epoch,
        "resumed_from_backup": list(backup) if backup else None,
        "seconds": round(time.time() - started, 1),
        "history": fitted,
    }
