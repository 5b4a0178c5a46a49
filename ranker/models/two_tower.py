"""The ranking model of every variant: a relevance tower, for two-tower variants a bias tower.

In the style of TFRS's `Model.compute_loss`: the dataset yields parsed ELWC feature dicts and the
model knows which labels its variant learns from.

| variant          | relevance tower inputs         | bias tower | labels                   |
|------------------|--------------------------------|------------|--------------------------|
| naive            | item + context features        | –          | clicks                   |
| position-feature | … + position, device (#36)     | –          | clicks                   |
| additive / pal   | item + context features        | yes        | clicks                   |
| oracle           | item + context features        | –          | true relevance (gain)    |
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranker.features import spec as fs
from ranker.models import combine, inputs
from ranker.models.bias import BiasTower, bias_logit_dropout
from ranker.models.config import ModelConfig
from ranker.models.relevance import RelevanceTower


class RankingModel(tfrs.models.Model):
    def __init__(self, config: ModelConfig, spec: fs.FeatureSpec):
        super().__init__()
        self.config = config
        devices = inputs.vocabulary(spec, fs.DEVICE)
        position_feature = config.variant == "position-feature"
        self.relevance_tower = RelevanceTower(
            spec, config.embedding_dim, config.hidden_units, config.moments,
            position_buckets=config.num_positions if position_feature else 0,
            device_vocabulary=devices if position_feature else None)
        self.bias_tower = (BiasTower(devices, config.num_positions, config.position_dropout)
                           if config.has_bias_tower else None)
        self.combination = config.variant if config.has_bias_tower else combine.NONE
        self.devices = devices

    def call(self, features: dict, training: bool = False) -> dict[str, tf.Tensor]:
        """Relevance logits and, for two-tower variants, bias logits, each `[b, l]`."""
        out = {"relevance": self.relevance_tower(features)}
        if self.bias_tower is not None:
            out["bias"] = self.bias_tower(features[fs.POSITION], features[fs.DEVICE], training=training)
        return out

    def click_log_probs(self, features: dict, training: bool = False, logits: dict | None = None):
        """(log p(click), log(1 − p(click))) of the full click model, `[b, l]` each; `logits` are
        this model's outputs for `features` when the caller already has them."""
        logits = logits if logits is not None else self(features, training=training)
        bias = None
        if "bias" in logits:
            bias = combine.bias_term(logits["bias"], self.combination)
            bias = bias_logit_dropout(bias, self.config.bias_dropout, training)
        return combine.click_log_probs(logits["relevance"], bias, self.combination)

    def labels_and_mask(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """Clicks, or for the oracle the gain (2^r − 1)/(2^max − 1) of the true relevance."""
        if self.config.variant == "oracle":
            relevance = features[fs.RELEVANCE]
            mask = features[fs.MASK] & (relevance >= 0)
            gain = (tf.pow(2.0, relevance) - 1.0) / (2.0 ** self.config.max_relevance - 1.0)
            return tf.clip_by_value(gain, 0.0, 1.0), mask
        clicked = tf.cast(features[fs.CLICKED], tf.float32)
        return clicked, features[fs.MASK] & (clicked >= 0)

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        labels, mask = self.labels_and_mask(features)
        log_p, log_1mp = self.click_log_probs(features, training=training)
        if self.config.loss == "listwise":
            scores = combine.ranking_score(log_p, log_1mp, self.combination)
            return combine.listwise_loss(labels, scores, mask)
        return combine.pointwise_loss(labels, log_p, log_1mp, mask)

    def train_step(self, inputs):
        """TFRS's step with the loss divided by the replica count: under tf.distribute Keras sums
        replica outputs and the optimizer sums gradients, so this keeps both a global mean."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True) / replicas
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses]) / replicas
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return {**{m.name: m.result() for m in self.metrics}, "loss": loss,
                "regularization_loss": regularization_loss, "total_loss": total_loss}

    def test_step(self, inputs):
        """Scaled like train_step, since Keras sums the replicas' evaluation outputs too."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        loss = self.compute_loss(inputs, training=False) / replicas
        regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses]) / replicas
        return {**{m.name: m.result() for m in self.metrics}, "loss": loss,
                "regularization_loss": regularization_loss, "total_loss": loss + regularization_loss}

    def relevance_sample(self, ds, max_batches: int = 20) -> tf.Tensor | None:
        """Relevance logits of shown items, the population the additive read-off averages over."""
        if self.bias_tower is None:
            return None
        return tf.concat([tf.boolean_mask(self(b)["relevance"], b[fs.MASK]) for b in ds.take(max_batches)], 0)

    def propensity(self, positions: int, relevance_sample: tf.Tensor | None = None) -> dict[str, list[float]]:
        """Learned examination relative to position 1, per device (two-tower variants only).

        pal: σ(b(k, d)) / σ(b(1, d)), the examination ratio itself. additive: the click-rate ratio
        the model predicts for the same items shown at k instead of 1, mean σ(r + b(k, d)) / mean
        σ(r + b(1, d)) over `relevance_sample` (relevance logits of logged items) — which is what
        the examination ratio is under a PBM; without a sample, exp(b(k, d) − b(1, d)), the odds
        ratio, which matches only while clicks are rare.
        """
        if self.bias_tower is None:
            return {}
        curves = {}
        for device in self.devices:
            logits = self.bias_tower.curve(device, positions)
            if self.combination == combine.PAL:
                rate = tf.exp(tf.math.log_sigmoid(logits))
            elif relevance_sample is not None:
                sample = tf.reshape(tf.cast(relevance_sample, tf.float32), [-1, 1])
                rate = tf.reduce_mean(tf.sigmoid(sample + logits[None, :]), axis=0)
            else:
                rate = tf.exp(logits)
            curves[device] = [round(float(v), 4) for v in (rate / rate[0]).numpy()]
        return curves
