"""`ranker train`: one variant on `preprocess` output, with checkpoints, resume and TensorBoard."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time

import tensorflow as tf

from ranker.errors import RankerError
from ranker.models import data, distribute
from ranker.models.config import ModelConfig, copy_spec_into, model_spec
from ranker.models.two_tower import RankingModel

CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"  # BackupAndRestore's mid-epoch state; deleted when fit completes
BACKUP_EVERY = 100  # batches between mid-epoch backups


def _new_config(data_dir: str, spec, **overrides) -> ModelConfig:
    config = ModelConfig(**overrides)
    config.train_list_size = data.click_list_size(data_dir, spec)
    sample = data.dataset(data_dir, "train", spec, config.train_list_size, config.batch_size)
    config.moments = data.feature_moments(sample, spec)
    config.max_relevance = data.max_relevance(data_dir)
    return config


def _prepare(model_dir: str, data_dir: str, overrides: dict) -> tuple[ModelConfig, object]:
    """A fresh model dir gets config + spec copy; an existing one is resumed if it matches."""
    os.makedirs(model_dir, exist_ok=True)
    if os.path.exists(os.path.join(model_dir, "model_config.json")):
        config = ModelConfig.load(model_dir)
        if config.variant != overrides["variant"]:
            raise RankerError(f"{model_dir} holds a {config.variant!r} model, not {overrides['variant']!r};"
                              " use another --model-dir")
        config.epochs = overrides["epochs"]
        return config, model_spec(model_dir)
    spec = copy_spec_into(model_dir, data.data_spec(data_dir))
    config = _new_config(data_dir, spec, **overrides)
    config.save(model_dir)
    return config, spec


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves model and optimizer after every epoch, numbered by epochs done.

    Every worker saves (variables are read collectively) but only the chief's copy stays: `after`
    deletes a worker's throw-away copy.
    """

    def __init__(self, manager: tf.train.CheckpointManager, after=None):
        super().__init__()
        self.manager = manager
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=epoch + 1)
        if self.after is not None:
            self.after()


def build(config: ModelConfig, spec) -> RankingModel:
    model = RankingModel(config, spec)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    return model


def checkpoint_manager(model: RankingModel, model_dir: str, max_to_keep: int = 3,
                       directory: str | None = None):
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    return tf.train.CheckpointManager(checkpoint, directory or os.path.join(model_dir, CHECKPOINT_DIR),
                                      max_to_keep=max_to_keep)


def restore(model: RankingModel, model_dir: str, optimizer_too: bool = False) -> int:
    """Restores the latest checkpoint; returns the number of epochs it had completed (0: none)."""
    manager = checkpoint_manager(model, model_dir)
    if manager.latest_checkpoint is None:
        return 0
    status = manager.checkpoint.restore(manager.latest_checkpoint)
    if not optimizer_too:
        status.expect_partial()
    return int(manager.latest_checkpoint.rsplit("-", 1)[-1])


def load_trained(model_dir: str) -> tuple[RankingModel, ModelConfig, object]:
    """The trained model of a model dir (for evaluate and export)."""
    config = ModelConfig.load(model_dir)
    spec = model_spec(model_dir)
    model = build(config, spec)
    if restore(model, model_dir) == 0:
        raise RankerError(f"{model_dir}: no checkpoint yet; run `ranker train` first")
    return model, config, spec


def backup_position(backup_dir: str) -> tuple[int, int] | None:
    """(epoch, batch), both 0-based, of the last mid-epoch backup; None without one."""
    folder = os.path.join(backup_dir, "chief")  # where Keras's BackupAndRestore keeps it
    latest = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    if latest is None:
        return None
    try:
        return (int(tf.train.load_variable(latest, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")),
                int(tf.train.load_variable(latest, "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE")))
    except (tf.errors.OpError, ValueError):  # not a backup, or one being written
        return None


def _drop_stale_backup(model_dir: str) -> None:
    """A backup older than the last epoch checkpoint (killed after an epoch ended, before the
    next backup) would roll training back: delete it."""
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))
    position = backup_position(os.path.join(model_dir, BACKUP_DIR))
    if latest and position and position[0] < int(latest.rsplit("-", 1)[-1]):
        shutil.rmtree(os.path.join(model_dir, BACKUP_DIR), ignore_errors=True)


def _built(config: ModelConfig, spec, data_dir: str) -> RankingModel:
    """Model and optimizer variables created now, so the two restores (epoch checkpoint, then
    BackupAndRestore's at fit start) apply at once and in that order, not deferred."""
    model = build(config, spec)
    model(next(iter(data.dataset(data_dir, "train", spec, config.train_list_size, 2))))
    model.optimizer.build(model.trainable_variables)
    return model


def _loader(config: ModelConfig, data_dir: str, spec, seed: int):
    """(train batches, eval batches or None, train steps per epoch)."""
    steps = math.ceil(data.num_lists(data_dir, "train") / config.batch_size)
    train_ds = data.dataset(data_dir, "train", spec, config.train_list_size, config.batch_size,
                            shuffle=True, seed=seed, cache=True)
    # A known length lets fit resume mid-epoch; every worker sees the same global batches.
    train_ds = distribute.shard_options(train_ds.apply(tf.data.experimental.assert_cardinality(steps)))
    eval_ds = None
    if data.has_split(data_dir, "eval"):
        eval_ds = distribute.shard_options(data.dataset(
            data_dir, "eval", spec, config.train_list_size, config.batch_size, cache=True))
    return train_ds, eval_ds, steps


def train(data_dir: str, model_dir: str, variant: str = "additive", epochs: int = 5,
          batch_size: int = 128, seed: int = 0, position_dropout: float = 0.1,
          bias_dropout: float = 0.0, loss: str = "pointwise", learning_rate: float = 3e-3,
          verbose: int = 1, strategy: str = "default", backup_every: int = BACKUP_EVERY) -> dict:
    overrides = dict(variant=variant, epochs=epochs, batch_size=batch_size, seed=seed,
                     position_dropout=position_dropout, bias_dropout=bias_dropout, loss=loss,
                     learning_rate=learning_rate)
    if epochs < 1 or batch_size < 1 or backup_every < 0:
        raise RankerError("--epochs and --batch-size must be positive, --backup-every not negative")
    dist = distribute.make_strategy(strategy)  # first: multi-worker configures the TF runtime
    chief = distribute.is_chief(dist)
    tf.keras.utils.set_random_seed(seed)
    if chief:
        config, spec = _prepare(model_dir, data_dir, overrides)
        _drop_stale_backup(model_dir)
    distribute.barrier(dist)  # workers read the model dir only once the chief has written it
    if not chief:
        config, spec = ModelConfig.load(model_dir), model_spec(model_dir)
        config.epochs = epochs
    train_ds, eval_ds, steps = _loader(config, data_dir, spec, seed)
    with dist.scope():
        model = _built(config, spec, data_dir)
    checkpoints = os.path.join(model_dir, CHECKPOINT_DIR)
    manager = checkpoint_manager(model, model_dir, directory=distribute.write_dir(checkpoints, dist))
    initial_epoch = restore(model, model_dir, optimizer_too=True)  # every worker reads the chief's
    if initial_epoch:
        print(f"resuming {model_dir} after epoch {initial_epoch}", file=sys.stderr)
    backup = backup_position(os.path.join(model_dir, BACKUP_DIR)) if initial_epoch < config.epochs else None
    if backup:
        print(f"resuming {model_dir} from its backup in epoch {backup[0] + 1}, batch {backup[1] + 1}",
              file=sys.stderr)
    # Keras writes TensorBoard logs and backups of non-chief workers to temporary dirs itself.
    callbacks = [EpochCheckpoint(manager, after=lambda: distribute.discard(checkpoints, dist)),
                 tf.keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), profile_batch=0)]
    if backup_every:
        callbacks.append(tf.keras.callbacks.BackupAndRestore(os.path.join(model_dir, BACKUP_DIR),
                                                             save_freq=backup_every))
    started = time.time()
    history = {}
    if initial_epoch < config.epochs:
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr, JSON result to stdout
            fit = model.fit(train_ds, validation_data=eval_ds, epochs=config.epochs,
                            steps_per_epoch=steps, initial_epoch=initial_epoch,
                            callbacks=callbacks, verbose=verbose)
        history = {k: [round(float(v), 5) for v in vs] for k, vs in fit.history.items()}
    summary = {
        "model_dir": model_dir,
        "data_dir": os.path.abspath(data_dir),
        "variant": config.variant,
        "epochs": config.epochs,
        "strategy": strategy,
        "replicas": dist.num_replicas_in_sync,
        "resumed_from_epoch": initial_epoch,
        "resumed_from_backup": list(backup) if backup else None,
        "seconds": round(time.time() - started, 1),
        "history": history,
        "propensity": model.propensity(config.train_list_size, model.relevance_sample(train_ds)),
    }
    if chief:
        with open(os.path.join(model_dir, "train_summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary
