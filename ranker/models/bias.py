"""The bias tower: a shallow model of how position and device shape clicks. Never served.

bias_logit(pos, dev) = w_pos[pos] + w_dev[dev] + w_pos×dev[pos, dev]: the interaction table lets
each device learn its own position curve. Position id 0 is "unknown" (padding, and what position
dropout substitutes); positions past the table share its last bucket.
"""
from __future__ import annotations

import tensorflow as tf

from ranker.features import spec as fs
from ranker.models import inputs

# The "unknown" position id is the parse default of a missing position (fs.PADDING_POSITION): padded
# slots and position dropout both read as unknown. Changing one means changing the other.
UNKNOWN_POSITION = fs.PADDING_POSITION


class BiasTower(tf.keras.layers.Layer):
    """(position `[b, l]`, device `[b]`) → bias logits `[b, l]`."""

    def __init__(self, device_vocabulary: list[str], num_positions: int, position_dropout: float,
                 **kwargs):
        super().__init__(name="bias_tower", **kwargs)
        self.num_positions = num_positions
        self.position_dropout = position_dropout
        self.device_ids = tf.keras.layers.StringLookup(vocabulary=device_vocabulary, num_oov_indices=1)
        self.num_devices = len(device_vocabulary) + 1
        zeros = "zeros"
        self.position_weight = tf.keras.layers.Embedding(num_positions + 1, 1, embeddings_initializer=zeros,
                                                         name="position_weight")
        self.device_weight = tf.keras.layers.Embedding(self.num_devices, 1, embeddings_initializer=zeros,
                                                       name="device_weight")
        self.cross_weight = tf.keras.layers.Embedding((num_positions + 1) * self.num_devices, 1,
                                                      embeddings_initializer=zeros, name="cross_weight")

    def position_ids(self, position: tf.Tensor, training: bool) -> tf.Tensor:
        """Bucketed positions; in training each is replaced by UNKNOWN with the dropout rate."""
        ids = tf.clip_by_value(tf.cast(position, tf.int32), UNKNOWN_POSITION, self.num_positions)
        if training and self.position_dropout > 0:
            keep = tf.random.uniform(tf.shape(ids)) >= self.position_dropout
            ids = tf.where(keep, ids, UNKNOWN_POSITION)
        return ids

    def call(self, position: tf.Tensor, device: tf.Tensor, training: bool = False) -> tf.Tensor:
        position_ids = self.position_ids(position, training)
        device_ids = inputs.broadcast_to_list(self.device_ids(device), tf.shape(position_ids)[1], 2)
        device_ids = tf.cast(device_ids, tf.int32)
        cross_ids = position_ids * self.num_devices + device_ids
        logit = (self.position_weight(position_ids) + self.device_weight(device_ids)
                 + self.cross_weight(cross_ids))
        return tf.squeeze(logit, -1)

    def curve(self, device: str, positions: int) -> tf.Tensor:
        """Bias logits of positions 1..`positions` on one device (no dropout)."""
        position = tf.range(1, positions + 1, dtype=tf.int64)[None, :]
        return self(position, tf.constant([device]), training=False)[0]


def bias_logit_dropout(bias: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    """Zhang et al. 2023: zero the whole bias term of an impression with probability `rate`.

    No 1/(1−rate) rescaling: a dropped impression is modelled by relevance alone (as if examined),
    which is what keeps relevance from leaking into the bias tower.
    """
    if not training or rate <= 0:
        return bias
    keep = tf.cast(tf.random.uniform(tf.shape(bias)) >= rate, bias.dtype)
    return bias * keep
