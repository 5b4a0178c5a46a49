"""`ranker evaluate`: judged nDCG on true labels, click metrics, learned vs true propensities.

Judged lists hold candidates of the logged queries' kind with graded labels from the simulator or
human judges; nDCG there measures what debiasing is for. Click metrics on the eval split measure
the full click model (relevance and bias towers) where one is given; a SavedModel holds only the
relevance tower, so its click metrics are those of σ(relevance).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

from ranker import tfr
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import data, inputs

NDCG_CUTOFFS = (1, 3, 5, 10)
EVAL_BATCH = 256
RAW_SIGNATURE = "score_lists"


class KerasScorer:
    """Scores lists with a trained model dir: relevance logits and the full click model."""

    def __init__(self, model_dir: str):
        from ranker.models.train import load_trained

        self.model, self.config, self.spec = load_trained(model_dir)
        self.list_size = self.config.train_list_size

    def relevance(self, features: dict) -> tf.Tensor:
        without_bias_inputs = {k: v for k, v in features.items() if k not in (fs.POSITION, fs.DEVICE)}
        return self.model.relevance_tower(without_bias_inputs)

    def score(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """(relevance logits for ranking, p(click) of the full model) in one pass of the towers;
        only the position-feature baseline needs a second pass (ranked at its fixed position)."""
        logits = self.model(features)
        log_p, _ = self.model.click_log_probs(features, logits=logits)
        if self.config.variant == "position-feature":
            return self.relevance(features), tf.exp(log_p)
        return logits["relevance"], tf.exp(log_p)

    def propensity(self, relevance_sample: tf.Tensor | None = None) -> dict:
        return self.model.propensity(self.list_size, relevance_sample)


class SavedModelScorer:
    """Scores lists with an exported SavedModel's raw-tensor signature (relevance only)."""

    def __init__(self, saved_model_dir: str, spec: fs.FeatureSpec, list_size: int):
        if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
            raise RankerError(f"{saved_model_dir}: no saved_model.pb; give an exported version folder")
        self.signature = tf.saved_model.load(saved_model_dir).signatures[RAW_SIGNATURE]
        self.spec = spec
        self.list_size = list_size

    def relevance(self, features: dict) -> tf.Tensor:
        list_size = tf.shape(features[fs.MASK])[1]
        raw = {}
        for f in self.spec.features:
            rank = 3 if f.kind == fs.VECTOR else 2
            raw[f.name] = inputs.broadcast_to_list(features[f.name], list_size, rank)
        return self.signature(**raw)["scores"]

    def score(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        relevance = self.relevance(features)
        return relevance, tf.sigmoid(relevance)

    def propensity(self, relevance_sample: tf.Tensor | None = None) -> dict:
        return {}


def _judged_metrics(scorer, ds: tf.data.Dataset) -> dict:
    metrics = {k: tfr.ndcg(k) for k in NDCG_CUTOFFS}
    lists = 0
    for batch in ds:
        labels = tf.where(batch[fs.MASK], batch[fs.RELEVANCE], fs.PADDING_LABEL)
        scores = scorer.relevance(batch)
        for metric in metrics.values():
            metric.update_state(labels, scores)
        lists += int(tf.reduce_sum(tf.cast(tf.reduce_any(labels >= 0, axis=1), tf.int32)))
    out = {f"ndcg@{k}": round(float(m.result()), 5) for k, m in metrics.items()}
    out["lists"] = lists
    return out


def _click_metrics(scorer, ds: tf.data.Dataset, sample_batches: int = 20) -> tuple[dict, tf.Tensor]:
    """Click metrics of the split, and the relevance logits of its first batches' shown items
    (the population the additive propensity read-off averages over), from one scoring pass."""
    auc = tf.keras.metrics.AUC(num_thresholds=2000)
    ndcg = tfr.ndcg(10)
    losses, count, lists, sample = 0.0, 0, 0, []
    for batch in ds:
        clicked = tf.cast(batch[fs.CLICKED], tf.float32)
        mask = batch[fs.MASK] & (clicked >= 0)
        relevance, p = scorer.score(batch)
        p = tf.clip_by_value(p, 1e-7, 1 - 1e-7)
        y, pv = tf.boolean_mask(clicked, mask), tf.boolean_mask(p, mask)
        losses += float(tf.reduce_sum(-(y * tf.math.log(pv) + (1 - y) * tf.math.log(1 - pv))))
        count += int(tf.size(y))
        auc.update_state(y, pv)
        ndcg.update_state(tf.where(mask, clicked, fs.PADDING_LABEL), relevance)
        lists += int(tf.reduce_sum(tf.cast(tf.reduce_any(mask, axis=1), tf.int32)))
        if len(sample) < sample_batches:
            sample.append(tf.boolean_mask(relevance, batch[fs.MASK]))
    if not count:
        raise RankerError("the click split holds no impressions")
    return ({"log_loss": round(losses / count, 5), "auc": round(float(auc.result()), 5),
             "ndcg@10": round(float(ndcg.result()), 5), "lists": lists}, tf.concat(sample, 0))


def propensity_error(learned: dict, truth: dict) -> float | None:
    """Mean absolute error over positions 2…n of the devices both curves cover."""
    errors = []
    for device, curve in learned.items():
        true_curve = truth.get(device)
        if not true_curve:
            continue
        n = min(len(curve), len(true_curve))
        errors.extend(abs(a - b) for a, b in zip(curve[1:n], true_curve[1:n]))
    return round(float(np.mean(errors)), 5) if errors else None


def _truth(data_dir: str) -> dict | None:
    path = os.path.join(data_dir, "truth.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh).get("propensity")


def _splits(split: str, data_dir: str) -> list[str]:
    wanted = {"default": ["eval", "judged"], "all": ["train", "eval", "judged"]}.get(split, [split])
    present = [s for s in wanted if data.has_split(data_dir, s)]
    if not present:
        raise RankerError(f"{data_dir}: none of the splits {wanted} exist")
    return present


def evaluate(data_dir: str, model_dir: str | None = None, saved_model: str | None = None,
             split: str = "default") -> dict:
    """metrics.json's content (SPEC.md, "`evaluate` output")."""
    spec = data.data_spec(data_dir)
    if model_dir:
        scorer = KerasScorer(model_dir)
    else:
        scorer = SavedModelScorer(saved_model, spec, data.click_list_size(data_dir, spec))
    metrics: dict = {}
    sample = None
    for name in _splits(split, data_dir):
        list_size = spec.max_list_size if name == "judged" else scorer.list_size
        ds = data.dataset(data_dir, name, spec, list_size, EVAL_BATCH)
        print(f"evaluating on {name} …", file=sys.stderr)
        if name == "judged":
            metrics["judged"] = _judged_metrics(scorer, ds)
        else:
            key = "clicks" if name == "eval" else f"clicks_{name}"
            metrics[key], sample = _click_metrics(scorer, ds)
    learned = scorer.propensity(sample)
    if learned:
        metrics["propensity"] = learned
    truth = _truth(data_dir)
    if truth:
        metrics["propensity_truth"] = truth
        if learned:
            metrics["propensity_error"] = propensity_error(learned, truth)
    return metrics


def evaluate_to_file(data_dir: str, model_dir: str | None = None, saved_model: str | None = None,
                     split: str = "default", output: str | None = None) -> dict:
    metrics = evaluate(data_dir, model_dir, saved_model, split)
    output = output or os.path.join(model_dir or saved_model, "metrics.json")
    with open(output, "w") as fh:
        json.dump(metrics, fh, indent=2)
    print(f"wrote {output}", file=sys.stderr)
    return metrics
