"""How the towers combine into a click model, and the losses on it.

- additive ("Watch Next"): logit(click) = relevance_logit + bias_logit.
- pal (multiplicative): p(click) = σ(relevance_logit) · σ(bias_logit), i.e. p(click | seen, x) ·
  p(seen | position, device); everything is kept in log space for a stable cross-entropy.
- no bias tower (naive, position-feature, oracle): p(click) = σ(relevance_logit).

The bias term is what the bias-logit dropout zeroes: the bias logit (additive) or log σ(bias
logit) (PAL); both make a dropped impression "examined, relevance alone".
"""
from __future__ import annotations

import math

import tensorflow as tf

from ranker import tfr
from ranker.features import spec as fs

ADDITIVE, PAL, NONE = "additive", "pal", "none"
_LOG_HALF = -math.log(2.0)


def log1mexp(log_p: tf.Tensor) -> tf.Tensor:
    """log(1 − exp(a)) for a < 0, accurate at both ends (Mächler 2012)."""
    a = tf.minimum(log_p, -1e-7)
    return tf.where(a > _LOG_HALF, tf.math.log(-tf.math.expm1(a)), tf.math.log1p(-tf.exp(a)))


def bias_term(bias_logit: tf.Tensor, combination: str) -> tf.Tensor:
    return tf.math.log_sigmoid(bias_logit) if combination == PAL else bias_logit


def click_log_probs(relevance_logit: tf.Tensor, bias: tf.Tensor | None, combination: str):
    """(log p(click), log(1 − p(click))) for each candidate; `bias` is a `bias_term` (or None)."""
    if combination == PAL:
        log_p = tf.math.log_sigmoid(relevance_logit) + bias
        return log_p, log1mexp(log_p)
    logit = relevance_logit if bias is None or combination == NONE else relevance_logit + bias
    return tf.math.log_sigmoid(logit), tf.math.log_sigmoid(-logit)


def ranking_score(log_p: tf.Tensor, log_1mp: tf.Tensor, combination: str) -> tf.Tensor:
    """A score monotone in p(click) for listwise losses: the logit, or log p for PAL."""
    return log_p if combination == PAL else log_p - log_1mp


def pointwise_loss(labels: tf.Tensor, log_p: tf.Tensor, log_1mp: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy (labels in [0, 1], soft labels allowed), averaged over unmasked slots."""
    weights = tf.cast(mask, tf.float32)
    labels = tf.where(mask, labels, 0.0)
    per_item = -(labels * log_p + (1.0 - labels) * log_1mp)
    return tf.reduce_sum(per_item * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def listwise_loss(labels: tf.Tensor, scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """TF-Ranking's softmax loss; padded slots get the padding label (−1), which it ignores."""
    return tfr.softmax_loss()(tf.where(mask, labels, fs.PADDING_LABEL), scores)
