"""The learned propensity read-off: one definition for every variant (issue 9, item 4).

The examination ratio at a fixed reference item, per device, relative to position 1:

- additive: σ(r_ref + b(k, d)) / σ(r_ref + b(1, d)), with r_ref the median relevance logit of the
  logged (shown) items of the eval split (`reference_logit`); under a PBM this is exactly the
  examination ratio for an item of that relevance. Without a reference it falls back to the
  rare-click limit r_ref → −∞, exp(b(k, d) − b(1, d)).
- pal: σ(b(k, d)) / σ(b(1, d)), the examination ratio itself (no reference needed).
- dla: its normalised propensity p_k / p_1 = exp(q(k, d) − q(1, d)) with p = softmax(q).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ranker.features import spec as fs
from ranker.models import combine

DLA = "dla"
REFERENCE_BATCHES = 20  # batches of shown items the median relevance logit is taken over


def resolve_reference(reference) -> float | None:
    """A float reference logit; a sample of relevance logits (array or tensor) gives its median."""
    if reference is None:
        return None
    values = np.asarray(reference.numpy() if hasattr(reference, "numpy") else reference, np.float64)
    if values.size == 0:
        return None
    return float(np.median(values))


def examination_ratio(bias_logits: tf.Tensor, combination: str, reference_logit: float | None) -> list[float]:
    """[1.0, p2, …] from one device's bias logits at positions 1…n."""
    logits = tf.cast(bias_logits, tf.float64)
    if combination == combine.PAL:
        rate = tf.sigmoid(logits)
    elif combination == DLA:
        rate = tf.exp(logits - logits[0])
    elif reference_logit is not None:
        rate = tf.sigmoid(reference_logit + logits)
    else:
        rate = tf.exp(logits - logits[0])
    return [round(float(v), 4) for v in (rate / rate[0]).numpy()]


def reference_logit(model, ds: tf.data.Dataset, max_batches: int = REFERENCE_BATCHES) -> float | None:
    """The median relevance logit of shown items over the first `max_batches` batches of `ds`."""
    shown = [tf.boolean_mask(model.relevance_tower(batch), batch[fs.MASK]) for batch in ds.take(max_batches)]
    return resolve_reference(tf.concat(shown, 0)) if shown else None
