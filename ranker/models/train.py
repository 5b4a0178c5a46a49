"""`ranker train`: one variant on `preprocess` output, with checkpoints, resume and TensorBoard."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import tensorflow as tf

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data
from ranker.models.config import ModelConfig, copy_spec_into, model_spec
from ranker.models.two_tower import RankingModel

CHECKPOINT_DIR = "checkpoints"


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
    """Saves model and optimizer after every epoch, numbered by epochs done."""

    def __init__(self, manager: tf.train.CheckpointManager):
        super().__init__()
        self.manager = manager

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=epoch + 1)


def build(config: ModelConfig, spec) -> RankingModel:
    model = RankingModel(config, spec)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    return model


def checkpoint_manager(model: RankingModel, model_dir: str, max_to_keep: int = 3):
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    return tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, CHECKPOINT_DIR),
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


def _relevance_sample(model: RankingModel, ds, max_batches: int = 20):
    if model.bias_tower is None:
        return None
    return tf.concat([tf.boolean_mask(model(b)["relevance"], b[fs.MASK]) for b in ds.take(max_batches)], 0)


def train(data_dir: str, model_dir: str, variant: str = "additive", epochs: int = 5,
          batch_size: int = 128, seed: int = 0, position_dropout: float = 0.1,
          bias_dropout: float = 0.0, loss: str = "pointwise", learning_rate: float = 3e-3,
          verbose: int = 1) -> dict:
    overrides = dict(variant=variant, epochs=epochs, batch_size=batch_size, seed=seed,
                     position_dropout=position_dropout, bias_dropout=bias_dropout, loss=loss,
                     learning_rate=learning_rate)
    if epochs < 1 or batch_size < 1:
        raise RankerError("--epochs and --batch-size must be positive")
    tf.keras.utils.set_random_seed(seed)
    config, spec = _prepare(model_dir, data_dir, overrides)
    model = build(config, spec)
    manager = checkpoint_manager(model, model_dir)
    train_ds = data.dataset(data_dir, "train", spec, config.train_list_size, config.batch_size,
                            shuffle=True, seed=seed, cache=True)
    eval_ds = (data.dataset(data_dir, "eval", spec, config.train_list_size, config.batch_size,
                            cache=True)
               if data.has_split(data_dir, "eval") else None)
    # Variables are created on the first batch; the checkpoint restores into them then (deferred).
    initial_epoch = restore(model, model_dir, optimizer_too=True)
    if initial_epoch:
        print(f"resuming {model_dir} after epoch {initial_epoch}", file=sys.stderr)
    callbacks = [EpochCheckpoint(manager),
                 tf.keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), profile_batch=0)]
    started = time.time()
    history = {}
    if initial_epoch < config.epochs:
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr, JSON result to stdout
            fit = model.fit(train_ds, validation_data=eval_ds, epochs=config.epochs,
                            initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose)
        history = {k: [round(float(v), 5) for v in vs] for k, vs in fit.history.items()}
    summary = {
        "model_dir": model_dir,
        "data_dir": os.path.abspath(data_dir),
        "variant": config.variant,
        "epochs": config.epochs,
        "resumed_from_epoch": initial_epoch,
        "seconds": round(time.time() - started, 1),
        "history": history,
        "propensity": model.propensity(config.train_list_size, _relevance_sample(model, train_ds)),
    }
    with open(os.path.join(model_dir, "train_summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
