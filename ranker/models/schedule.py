"""The training recipe: how many epochs, the learning-rate schedule and the two optimizers.

Step budget: a fixed epoch count gives small data too few optimizer steps (2,000 requests at batch
128 are 16 steps an epoch; 5 epochs leave the zero-initialised bias tower barely moved). Unless
`--epochs` is given, the maximum number of epochs is

    epochs = clip(ceil(min_steps / steps_per_epoch), MIN_EPOCHS, MAX_AUTO_EPOCHS)

so every data size gets at least `--min-steps` steps (up to MAX_AUTO_EPOCHS passes over the data);
early stopping on held-out click log-loss (checkpoints.BestCheckpoint) then ends training sooner.
The learning rate warms up linearly over WARMUP_FRACTION of that budget (at most MAX_WARMUP_STEPS)
and decays along a cosine to FINAL_FRACTION of its peak at the end of the budget.

Adam is invariant to the scale of gradients, so the bias tower (and DLA's propensity table) gets
its own optimizer with its own rate (`--bias-learning-rate`), not a scaled gradient.
"""
from __future__ import annotations

import math

import tensorflow as tf

from ranker.errors import RankerError

MIN_EPOCHS = 3
MAX_AUTO_EPOCHS = 100
WARMUP_FRACTION = 0.05
MAX_WARMUP_STEPS = 200
FINAL_FRACTION = 0.1


def plan_epochs(steps_per_epoch: int, epochs: int | None, min_steps: int) -> int:
    """The maximum number of epochs: `epochs` when given, else the step-budget rule above."""
    if epochs is not None:
        if epochs < 1:
            raise RankerError(f"--epochs must be positive, got {epochs}")
        return epochs
    needed = math.ceil(min_steps / max(steps_per_epoch, 1))
    return int(min(max(needed, MIN_EPOCHS), MAX_AUTO_EPOCHS))


@tf.keras.utils.register_keras_serializable(package="ranker")
class WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup` steps, then cosine decay to
    `peak · final_fraction` at `total` steps (flat after)."""

    def __init__(self, peak: float, total: int, warmup: int, final_fraction: float = FINAL_FRACTION):
        self.peak, self.total, self.warmup = float(peak), int(total), int(warmup)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0  # the rate of the step being taken, never 0
        warm = step / max(self.warmup, 1)
        progress = tf.clip_by_value((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        cosine = self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + tf.cos(math.pi * progress))
        return self.peak * tf.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "total": self.total, "warmup": self.warmup,
                "final_fraction": self.final_fraction}


def learning_rate(peak: float, total_steps: int, kind: str):
    """A constant rate, or WarmupCosine over `total_steps`."""
    if kind == "constant" or total_steps <= 0:
        return peak
    warmup = min(MAX_WARMUP_STEPS, max(1, int(WARMUP_FRACTION * total_steps)))
    return WarmupCosine(peak, total_steps, warmup)


def optimizers(config) -> tuple[tf.keras.optimizers.Optimizer, tf.keras.optimizers.Optimizer]:
    """(relevance optimizer, bias optimizer): Adam each, each with its own scheduled rate."""
    total = config.epochs * config.steps_per_epoch
    return (tf.keras.optimizers.Adam(learning_rate(config.learning_rate, total, config.lr_schedule)),
            tf.keras.optimizers.Adam(learning_rate(config.bias_learning_rate, total, config.lr_schedule),
                                     name="bias_adam"))


def build(config, spec):
    """The RankingModel of `config`, compiled with its relevance optimizer, with its bias optimizer."""
    from ranker.models.two_tower import RankingModel

    model = RankingModel(config, spec)
    relevance_optimizer, bias_optimizer = optimizers(config)
    model.compile(optimizer=relevance_optimizer)
    model.bias_optimizer = bias_optimizer
    return model
