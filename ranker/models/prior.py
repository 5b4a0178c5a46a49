"""PAL's examination curve anchored to the model-free harvested estimate (a Gaussian prior).

When the logging policy already ranks by relevance, position and relevance are confounded: the
bias tower can explain part of relevance as position (its curve falls too steeply) at almost no
cost in click likelihood. preprocess's intervention harvest (Agarwal et al. 2019) measures the
examination ratio from the same item shown at different positions, with bootstrap 95% intervals.
pal's training loss adds, per device d and position k ≥ 2 with a harvested value,

    weight · ½ · (log σ(b(k, d)) − log σ(b(1, d)) − log h(k, d))² / s(k, d)²  /  N

with s the harvested log-ratio's standard error (from its interval) and N the training items, so
the harvest counts as one more Gaussian likelihood term beside the clicks' (per-item mean) loss:
where clicks identify the curve they win, where they cannot the harvest does.
"""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from ranker.artifacts import HARVESTED_FILE, read_json

Z95 = 1.959964
MIN_LOG_SE = 0.02  # a harvested log-ratio is never trusted more than to ±2%


def harvested_prior(data_dir: str) -> dict:
    """{device: {"log_ratio": [...], "precision": [...]}} over positions 1…n (position 1 and
    positions without a usable estimate have precision 0); {} without a harvested file."""
    harvested = read_json(os.path.join(data_dir, HARVESTED_FILE)) or {}
    curves, intervals = harvested.get("propensity") or {}, harvested.get("ci95") or {}
    prior = {}
    for device, curve in curves.items():
        log_ratio, precision = [0.0] * len(curve), [0.0] * len(curve)
        for k, (value, bounds) in enumerate(zip(curve, intervals.get(device) or [])):
            if k and value and bounds and None not in bounds and min(bounds) > 0:
                se = max(math.log(bounds[1] / bounds[0]) / (2 * Z95), MIN_LOG_SE)
                log_ratio[k], precision[k] = math.log(value), 1.0 / se ** 2
        if any(precision):
            prior[device] = {"log_ratio": log_ratio, "precision": precision}
    return prior


class ExaminationPrior:
    """The prior's penalty for a PAL bias tower (`__call__(bias_tower)` → scalar)."""

    def __init__(self, prior: dict, weight: float, train_items: int):
        devices = sorted(prior)
        positions = max(len(p["log_ratio"]) for p in prior.values())

        def table(key):
            return np.array([prior[d][key] + [0.0] * (positions - len(prior[d][key])) for d in devices],
                            np.float32)

        self.devices = tf.constant(devices)
        self.positions = tf.tile(tf.range(1, positions + 1, dtype=tf.int64)[None, :], [len(devices), 1])
        self.target, self.precision = tf.constant(table("log_ratio")), tf.constant(table("precision"))
        self.scale = 0.5 * weight / max(train_items, 1)

    def __call__(self, bias_tower) -> tf.Tensor:
        log_exam = tf.math.log_sigmoid(bias_tower(self.positions, self.devices, training=False))
        log_ratio = log_exam - log_exam[:, :1]
        return self.scale * tf.reduce_sum(self.precision * tf.square(log_ratio - self.target))
