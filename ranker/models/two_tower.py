"""The ranking model of every variant: a relevance tower, for two-tower variants a bias tower.

In the style of TFRS's `Model.compute_loss`: the dataset yields parsed ELWC feature dicts and the
model knows which labels its variant learns from.

| variant          | relevance tower inputs         | bias tower | labels                   |
|------------------|--------------------------------|------------|--------------------------|
| naive            | item + context features        | –          | clicks                   |
| position-feature | … + position, device (#36)     | –          | clicks                   |
| additive / pal   | item + context features        | yes        | clicks                   |
| oracle           | item + context features        | –          | true relevance (gain)    |
| ips              | item + context features        | known p    | clicks · min(1/p, clip)  |
| pal, given p     | item + context features        | known p    | clicks, σ(r) · p(k, d)   |
| dla              | item + context features        | learned p  | clicks, DLA's two losses |

Two optimizers (schedule.optimizers): `optimizer` for the relevance tower, `bias_optimizer` for
the bias tower (DLA's propensity table), each with its own learning rate. With a listwise loss
the relevance scores are shift-invariant, so a scalar `click_offset`, trained on the pointwise
click log-loss with the towers held fixed, calibrates the click model; the `click_log_loss`
metric (pointwise BCE of the full click model) is what early stopping watches on the eval split.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranker.features import spec as fs
from ranker.models import combine, dla, inputs, ips
from ranker.models.prior import ExaminationPrior
from ranker.models import propensity as readoff
from ranker.models.bias import BiasTower, bias_logit_dropout
from ranker.models.config import ModelConfig
from ranker.models.relevance import RelevanceTower


class RankingModel(tfrs.models.Model):
    def __init__(self, config: ModelConfig, spec: fs.FeatureSpec):
        super().__init__()
        self.config = config
        devices = inputs.vocabulary(spec, fs.DEVICE)
        position_feature = config.variant == "position-feature"
        self.relevance_tower = RelevanceTower.for_config(
            spec, config, position_buckets=config.num_positions if position_feature else 0,
            device_vocabulary=devices if position_feature else None)
        self.bias_tower = None
        if config.has_bias_tower or config.variant == "dla":
            dropout = config.position_dropout if config.has_bias_tower else 0.0
            self.bias_tower = BiasTower(devices, config.num_positions, dropout)
        self.known_propensity = (ips.KnownPropensity(config.propensities, devices, config.num_positions)
                                 if config.known_examination else None)
        self.combination = config.variant if config.has_bias_tower else combine.NONE
        self.examination_prior = (ExaminationPrior(config.propensity_prior, config.propensity_prior_weight,
                                                   config.train_items)
                                  if config.propensity_prior and self.combination == combine.PAL else None)
        self.devices = devices
        self.click_offset = (self.add_weight(name="click_offset", shape=[], initializer="zeros")
                             if config.loss == "listwise" else None)
        self.click_log_loss = tf.keras.metrics.Mean(name="click_log_loss")
        # the epoch mean of the training loss, as the progress bar shows it (TFRS reports the last
        # batch's value, which Keras's History then records as the epoch's loss)
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        # Every log is a metric result, already reduced over all replicas and workers: Keras's
        # default ("auto": "sum" off TPU) would add up the workers' identical copies.
        self.distribute_reduction_method = "first"
        self.bias_optimizer = None  # set by schedule.build

    def call(self, features: dict, training: bool = False) -> dict[str, tf.Tensor]:
        """Relevance logits and, with a bias tower, bias logits (dla: q(k, d) − q(1, d)), `[b, l]`."""
        out = {"relevance": self.relevance_tower(features, training=training)}
        if self.bias_tower is not None:
            position, device = features[fs.POSITION], features[fs.DEVICE]
            out["bias"] = self.bias_tower(position, device, training=training)
            if self.config.variant == "dla":
                out["bias"] -= self.bias_tower(tf.ones_like(position), device, training=False)
        return out

    def click_log_probs(self, features: dict, training: bool = False, logits: dict | None = None,
                        calibrated: bool = True):
        """(log p(click), log(1 − p(click))) of the full click model, `[b, l]` each; `logits` are
        this model's outputs for `features` when the caller already has them."""
        logits = logits if logits is not None else self(features, training=training)
        relevance = logits["relevance"]
        if calibrated and self.click_offset is not None:
            relevance = relevance + self.click_offset
        if self.known_propensity is not None:
            log_exam = self.known_propensity(features[fs.POSITION], features[fs.DEVICE])
            return combine.click_log_probs(relevance, log_exam, combine.PAL)
        if self.config.variant == "dla":
            return combine.click_log_probs(relevance, dla.log_examination(logits["bias"]), combine.PAL)
        bias = None
        if "bias" in logits:
            bias = combine.bias_term(logits["bias"], self.combination)
            bias = bias_logit_dropout(bias, self.config.bias_dropout, training)
        return combine.click_log_probs(relevance, bias, self.combination)

    def labels_and_mask(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """Clicks, or for the oracle the gain (2^r − 1)/(2^max − 1) of the true relevance."""
        if self.config.variant == "oracle":
            relevance = features[fs.RELEVANCE]
            mask = features[fs.MASK] & (relevance >= 0)
            gain = (tf.pow(2.0, relevance) - 1.0) / (2.0 ** self.config.max_relevance - 1.0)
            return tf.clip_by_value(gain, 0.0, 1.0), mask
        clicked = tf.cast(features[fs.CLICKED], tf.float32)
        return clicked, features[fs.MASK] & (clicked >= 0)

    def _training_loss(self, features: dict, labels, mask, logits: dict, training: bool) -> tf.Tensor:
        config = self.config
        if config.variant == "ips":
            log_exam = self.known_propensity(features[fs.POSITION], features[fs.DEVICE])
            return ips.ips_loss(labels, mask, logits["relevance"], log_exam, config.ips_clip, config.loss)
        if config.variant == "dla":
            ranking, examination = dla.dla_losses(labels, mask, logits["relevance"], logits["bias"],
                                                  features[fs.POSITION], config.ips_clip)
            return ranking + examination
        log_p, log_1mp = self.click_log_probs(features, training, logits, calibrated=False)
        if config.loss == "listwise":
            scores = combine.ranking_score(log_p, log_1mp, self.combination)
            return combine.listwise_loss(labels, scores, mask)
        return combine.pointwise_loss(labels, log_p, log_1mp, mask)

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        """The variant's training loss (plus, with a click offset, its calibration loss); updates
        the `click_log_loss` metric."""
        labels, mask = self.labels_and_mask(features)
        logits = self(features, training=training)
        loss = self._training_loss(features, labels, mask, logits, training)
        if self.examination_prior is not None:
            loss += self.examination_prior(self.bias_tower)
        held = {k: tf.stop_gradient(v) for k, v in logits.items()}
        log_p, log_1mp = self.click_log_probs(features, training, held)
        if self.click_offset is not None:  # reaches only the offset: the towers' logits are held
            loss += combine.pointwise_loss(labels, log_p, log_1mp, mask)
        per_item = -(labels * log_p + (1.0 - labels) * log_1mp)
        self.click_log_loss.update_state(tf.where(mask, per_item, 0.0), sample_weight=tf.cast(mask, tf.float32))
        return loss

    def variable_groups(self) -> tuple[list, list]:
        """(variables of `optimizer`, variables of `bias_optimizer`)."""
        bias = self.bias_tower.trainable_variables if self.bias_tower is not None else []
        refs = {v.ref() for v in bias}
        return [v for v in self.trainable_variables if v.ref() not in refs], bias

    def build_optimizers(self) -> None:
        main, bias = self.variable_groups()
        self.optimizer.build(main)
        if bias:
            self.bias_optimizer.build(bias)

    def train_step(self, inputs):
        """TFRS's step with the loss divided by the replica count (under tf.distribute the
        optimizer sums the replicas' gradients, so this keeps a global mean), each tower's
        gradients applied by its own optimizer; logs as `_logs` reports them."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        main, bias = self.variable_groups()
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True) / replicas
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses]) / replicas
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, main + bias)
        pairs = [(g, v) for g, v in zip(gradients, main + bias) if g is not None]
        refs = {v.ref() for v in bias}
        self.optimizer.apply_gradients([(g, v) for g, v in pairs if v.ref() not in refs])
        if bias:
            self.bias_optimizer.apply_gradients([(g, v) for g, v in pairs if v.ref() in refs])
        return self._logs(loss * replicas)

    def test_step(self, inputs):
        """The loss through the same epoch-mean tracker as train_step (val_loss)."""
        return self._logs(self.compute_loss(inputs, training=False))

    def _logs(self, loss: tf.Tensor) -> dict:
        """Epoch means: the metrics and the loss (one replica's, averaged over replicas and batches
        by the metric's synchronisation). A layer's regularization losses (none today) would be
        optimised, not reported: a constant `regularization_loss: 0.0000e+00` filled every line."""
        self.loss_tracker.update_state(loss)
        return {m.name: m.result() for m in self.metrics}

    def reference_logit(self, ds, max_batches: int = readoff.REFERENCE_BATCHES) -> float | None:
        """The median relevance logit of the shown items of `ds` (the read-off's reference item)."""
        return readoff.reference_logit(self, ds, max_batches)

    def propensity(self, positions: int, reference_logit: float | None = None) -> dict[str, list[float]]:
        """Learned examination relative to position 1 per device, {device: [1.0, p2, …]}, read at
        the reference item (propensity.py has the one definition); {} without a learned bias."""
        if self.bias_tower is None:
            return {}
        kind = readoff.DLA if self.config.variant == "dla" else self.combination
        reference = readoff.resolve_reference(reference_logit)
        return {device: readoff.examination_ratio(self.bias_tower.curve(device, positions), kind, reference)
                for device in self.devices}
