"""The `dla` variant: the Dual Learning Algorithm (Ai et al. 2018, as implemented in ULTRA).

A propensity model (a position × device table, the bias tower without dropout, logits q) and the
relevance tower (logits s) learn jointly from clicks c with two softmax cross-entropy losses:

- ranking loss on s with labels c_i · w_i, w_i = p_1 / p_i, p = softmax(q) over the list;
- propensity loss on q with labels c_i · r_1 / r_i, r = softmax(s) over the list;

where index 1 is the item shown at position 1, both weights are constants (stop-gradient) and
clipped at the model's `ips_clip`. Within a list the device is fixed, so p_1 / p_i = exp(q(1, d) −
q(k_i, d)): the tower's output for dla is the normalised log propensity q(k, d) − q(1, d), which
is also its propensity read-off (exp of it). Its click model (early stopping, click metrics) is a
PBM with that examination: p(click) = σ(s + offset) · min(1, exp(q(k, d) − q(1, d))), where the
scalar offset calibrates the shift-invariant softmax scores (two_tower.RankingModel).
"""
from __future__ import annotations

import tensorflow as tf

from ranker.models import combine

_FAR = 1 << 30


def first_position_index(position: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """`[b]`: the slot of each list's top shown position (position 1 in logged lists)."""
    ranked = tf.where(mask, tf.cast(position, tf.int64), _FAR)
    return tf.argmin(ranked, axis=1, output_type=tf.int32)


def propensity_weights(log_ratio: tf.Tensor, clip: float) -> tf.Tensor:
    """p_1 / p_i = exp(−(q_i − q_1)), clipped to [0, clip], constant."""
    return tf.stop_gradient(tf.minimum(tf.exp(-log_ratio), clip))


def relevance_weights(relevance: tf.Tensor, position: tf.Tensor, mask: tf.Tensor, clip: float) -> tf.Tensor:
    """r_1 / r_i = exp(s_1 − s_i) with r = softmax(s), clipped to [0, clip], constant."""
    first = tf.gather(relevance, first_position_index(position, mask), batch_dims=1)
    return tf.stop_gradient(tf.minimum(tf.exp(first[:, None] - relevance), clip))


def dla_losses(clicks: tf.Tensor, mask: tf.Tensor, relevance: tf.Tensor, log_ratio: tf.Tensor,
               position: tf.Tensor, clip: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(ranking loss, propensity loss); their sum is what DLA minimises."""
    clicks = tf.where(mask, clicks, 0.0)
    ranking = combine.listwise_loss(clicks * propensity_weights(log_ratio, clip), relevance, mask)
    exam_labels = clicks * relevance_weights(relevance, position, mask, clip)
    return ranking, combine.listwise_loss(exam_labels, log_ratio, mask)


def log_examination(log_ratio: tf.Tensor) -> tf.Tensor:
    """log min(1, p_k / p_1): the examination of the click model."""
    return tf.minimum(log_ratio, 0.0)
