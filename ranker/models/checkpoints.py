"""Where a model dir keeps its weights: epoch checkpoints (resume), mid-epoch backups (a killed
job), and the best epoch on held-out click log-loss (what evaluate and export load).

    MODEL_DIR/checkpoints/ckpt-N   after every epoch N (the last 3): resume continues from here
    MODEL_DIR/backup/              Keras BackupAndRestore, mid-epoch; deleted when fit completes
    MODEL_DIR/best/ckpt-N          the epoch with the lowest eval click log-loss so far
    MODEL_DIR/early_stopping.json  {"val_click_log_loss": [per epoch], "best_epoch", "patience"}
    MODEL_DIR/logs/                TensorBoard

A checkpoint is read in full before it is restored (`check_checkpoint`): a truncated or corrupt one,
or one whose weights are not finite, is a one-line RankerError, not a traceback at first use.
`FiniteGuard` ends a training whose loss or weights stop being finite before any checkpoint of
that epoch is written.
"""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from ranker import storage
from ranker.artifacts import read_json, write_json
from ranker.errors import RankerError
from ranker.models import schedule
from ranker.models.config import ModelConfig, model_spec
from ranker.models.two_tower import RankingModel

CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"  # BackupAndRestore's mid-epoch state; deleted when fit completes
BEST_DIR = "best"
STOPPING_FILE = "early_stopping.json"
TENSORBOARD_DIR = "logs"
MONITOR = "val_click_log_loss"  # Keras's name of the model's click_log_loss metric on eval data


def checkpoint_manager(model: RankingModel, model_dir: str, max_to_keep: int = 3,
                       directory: str | None = None):
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     bias_optimizer=model.bias_optimizer)
    return tf.train.CheckpointManager(checkpoint, directory or os.path.join(model_dir, CHECKPOINT_DIR),
                                      max_to_keep=max_to_keep)


def restore(model: RankingModel, model_dir: str, optimizer_too: bool = False, best: bool = False,
            strict: bool = False) -> int:
    """Restores the latest epoch checkpoint (with `best`, the best one when there is one); returns
    the number of epochs it had completed (0: none). `strict`: every variable the model already
    has must be in the checkpoint (RankerError otherwise)."""
    try:
        manager = checkpoint_manager(model, model_dir)
        path = manager.latest_checkpoint
        if best:
            path = tf.train.latest_checkpoint(os.path.join(model_dir, BEST_DIR)) or path
    except (tf.errors.OpError, text_format.ParseError, ValueError) as err:
        raise RankerError(f"{model_dir}: unreadable checkpoint state ({first_line(err)})") from None
    if path is None:
        return 0
    check_checkpoint(path)
    try:  # variables that exist already are restored now: a shape mismatch raises here
        status = manager.checkpoint.restore(path)
        if strict:
            status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as err:
        raise RankerError(f"{model_dir}: checkpoint does not match the model ({first_line(err)})") from None
    if not optimizer_too:
        status.expect_partial()
    return int(path.rsplit("-", 1)[-1])


def first_line(err: Exception) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:200]


def check_checkpoint(path: str) -> None:
    """Reads every tensor of a checkpoint: RankerError when it is truncated, corrupt or holds
    weights that are not finite (a diverged training)."""
    try:
        reader = tf.train.load_checkpoint(path)
        not_finite = [name for name, dtype in reader.get_variable_to_dtype_map().items()
                      if dtype.is_floating and not np.all(np.isfinite(reader.get_tensor(name)))]
    except (tf.errors.OpError, ValueError, IndexError) as err:  # IndexError: "Read less bytes than requested"
        raise RankerError(f"{path}: corrupt or truncated checkpoint ({first_line(err)})") from None
    if not_finite:
        raise RankerError(f"{path}: {len(not_finite)} tensor(s) hold NaN or infinite values (e.g."
                          f" {sorted(not_finite)[0]}): the training diverged")


def load_trained(model_dir: str, build_with=None) -> tuple[RankingModel, ModelConfig, object]:
    """The trained model of a model dir (for evaluate and export): its best epoch's weights when
    training was early-stopped on an eval split, else its last epoch's. `build_with(spec)`: features
    the model is called on first, so every variable exists and the restore is checked (strict)."""
    config = ModelConfig.load(model_dir)
    spec = model_spec(model_dir)
    model = schedule.build(config, spec)
    if build_with is not None:
        model(build_with(spec), training=False)
    if restore(model, model_dir, best=True, strict=build_with is not None) == 0:
        raise RankerError(f"{model_dir}: no checkpoint yet; run `ranker train` first")
    return model, config, spec


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves model and optimizers after every epoch, numbered by epochs done.

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


def read_stopping(model_dir: str, epochs_done: int) -> list:
    """The eval click log-loss of the first `epochs_done` epochs (None where unknown)."""
    history = read_json(os.path.join(model_dir, STOPPING_FILE), {}).get("val_click_log_loss", [])
    history = history[:epochs_done]
    return history + [None] * (epochs_done - len(history))


def best_epoch(history: list) -> int:
    """1-based epoch of the lowest value (the first of ties); 0 when none is known."""
    known = [(v, i) for i, v in enumerate(history) if v is not None and math.isfinite(v)]
    return min(known)[1] + 1 if known else 0


def should_stop(history: list, patience: int) -> bool:
    best = best_epoch(history)
    return bool(patience) and best > 0 and len(history) - best >= patience


class BestCheckpoint(tf.keras.callbacks.Callback):
    """Early stopping with best-checkpoint restore on the eval click log-loss.

    After each epoch: saves the weights to best/ when the value is the lowest so far, writes
    early_stopping.json (chief only) and stops after `patience` epochs without improvement
    (0: never). `history` holds the values of epochs already done (resume).
    """

    def __init__(self, manager: tf.train.CheckpointManager, state_path: str | None, patience: int,
                 history: list, after=None):
        super().__init__()
        self.manager, self.state_path, self.patience = manager, state_path, patience
        self.history, self.after = list(history), after

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        if value is None:
            raise RankerError(f"early stopping: no {MONITOR} in the epoch's logs")
        value = float(value)  # None where not finite: NaN is not JSON, and never the best
        value = round(value, 6) if math.isfinite(value) else None
        self.history = self.history[:epoch] + [None] * (epoch - len(self.history)) + [value]
        if best_epoch(self.history) == epoch + 1:
            self.manager.save(checkpoint_number=epoch + 1)
            if self.after is not None:
                self.after()
        if self.state_path:
            write_json(self.state_path, self.state())
        if should_stop(self.history, self.patience):
            self.model.stop_training = True

    def state(self) -> dict:
        return {"val_click_log_loss": self.history, "best_epoch": best_epoch(self.history),
                "patience": self.patience}


class Diverged(RankerError):
    """The loss or the weights stopped being finite."""


class FiniteGuard(tf.keras.callbacks.Callback):
    """Ends training (RankerError) at the first batch whose loss is NaN or infinite, and after an
    epoch whose weights are not finite. First in the callback list, it raises before the epoch's
    checkpoints are written, so no checkpoint of a diverged model exists."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise Diverged(f"training diverged: loss {float(loss)} in epoch {self.epoch + 1}, batch"
                           f" {batch + 1}; {DIVERGED_ADVICE}")

    def on_epoch_end(self, epoch, logs=None):
        if not all(bool(tf.reduce_all(tf.math.is_finite(w))) for w in self.model.trainable_variables):
            raise Diverged(f"training diverged: weights not finite after epoch {epoch + 1}; {DIVERGED_ADVICE}")


DIVERGED_ADVICE = ("nothing of that epoch was checkpointed; lower --learning-rate / --bias-learning-rate,"
                   " or look for extreme feature values in the data")


def backup_position(backup_dir: str) -> tuple[int, int] | None:
    """(epoch, batch), both 0-based, of the last mid-epoch backup; None without one."""
    folder = os.path.join(backup_dir, "chief")  # where Keras's BackupAndRestore keeps it
    latest = tf.train.latest_checkpoint(folder) if storage.isdir(folder) else None
    if latest is None:
        return None
    try:
        return (int(tf.train.load_variable(latest, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")),
                int(tf.train.load_variable(latest, "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE")))
    except (tf.errors.OpError, ValueError):  # not a backup, or one being written
        return None


def drop_stale_backup(model_dir: str) -> None:
    """A backup older than the last epoch checkpoint (killed after an epoch ended, before the
    next backup) would roll training back: delete it."""
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))
    position = backup_position(os.path.join(model_dir, BACKUP_DIR))
    if latest and position and position[0] < int(latest.rsplit("-", 1)[-1]):
        storage.rmtree(os.path.join(model_dir, BACKUP_DIR))
