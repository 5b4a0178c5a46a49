"""`ranker evaluate`: judged nDCG on true labels, click metrics, learned vs true propensities.

Judged lists hold candidates of the logged queries' kind with graded labels from the simulator or
human judges; nDCG there measures what debiasing is for. Click metrics on the eval split measure
the full click model (relevance and bias towers) where one is given; a SavedModel holds only the
relevance tower, so its click metrics are those of σ(relevance).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from ranker import storage, tfr
from ranker.artifacts import (EVAL, HARVESTED_FILE, JUDGED, METRICS_FILE, SPLITS, STATS_FILE, TRUTH_FILE,
                              read_json, write_json)
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import counterfactual, data, evaluate_view
from ranker.models.options import ALL_SPLITS, DEFAULT_SPLITS, EvaluateOptions
from ranker.models.resume import check_spec
from ranker.models.scorers import KerasScorer, SavedModelScorer
from ranker.models import metrics as metrics_lib

logger = logging.getLogger(__name__)

NDCG_CUTOFFS = metrics_lib.NDCG_CUTOFFS
EVAL_BATCH = 256


def _judged_metrics(scorer, ds: tf.data.Dataset) -> tuple[dict, dict]:
    """TF-Ranking's nDCG@k over the judged lists, and nDCG@10 per list (with its request id) for
    the scoreboard's paired bootstrap (metrics.ndcg_per_list, the same definition)."""
    metrics = {k: tfr.ndcg(k) for k in NDCG_CUTOFFS}
    lists, request_ids, per_list = 0, [], []
    for batch in ds:
        labels = tf.where(batch[fs.MASK], batch[fs.RELEVANCE], fs.PADDING_LABEL)
        scores = scorer.relevance(batch)
        for metric in metrics.values():
            metric.update_state(labels, scores)
        lists += int(tf.reduce_sum(tf.cast(tf.reduce_any(labels >= 0, axis=1), tf.int32)))
        per_list.extend(metrics_lib.ndcg_per_list(labels.numpy(), scores.numpy(), 10).round(5).tolist())
        if fs.REQUEST_ID in batch:
            request_ids.extend(r.decode("utf-8") for r in batch[fs.REQUEST_ID].numpy())
    out = {f"ndcg@{k}": round(float(m.result()), 5) for k, m in metrics.items()}
    out["lists"] = lists
    return out, {"request_id": request_ids, "ndcg@10": per_list}


class _ClickLists:
    """What one scoring pass over a click split keeps per list for the click nDCGs and the gate."""

    def __init__(self):
        self.clicks, self.scores, self.positions, self.devices, self.request_ids = [], [], [], [], []
        self.log_loss, self.relevance = [], []

    def add(self, batch: dict, clicked: tf.Tensor, mask: tf.Tensor, relevance: tf.Tensor, losses: tf.Tensor):
        self.clicks.append(tf.where(mask, clicked, -1.0).numpy())
        self.scores.append(relevance.numpy())
        if fs.RELEVANCE in batch:  # simulated logs: true grades of the shown items, never an input
            self.relevance.append(tf.where(mask, batch[fs.RELEVANCE], fs.PADDING_LABEL).numpy())
        self.positions.append(batch[fs.POSITION].numpy())
        self.devices.extend(d.decode("utf-8") for d in batch[fs.DEVICE].numpy())
        self.request_ids.extend(r.decode("utf-8") for r in batch[fs.REQUEST_ID].numpy())
        counts = tf.reduce_sum(tf.cast(mask, tf.float32), axis=1)
        self.log_loss.extend((tf.reduce_sum(losses, axis=1) / tf.maximum(counts, 1.0)).numpy().tolist())

    def finish(self) -> None:
        """One array per field, and the unweighted click DCGs (the biased click nDCG's)."""
        has_truth = len(self.relevance) == len(self.scores)
        self.clicks, self.scores, self.positions = (np.concatenate(x) for x in (self.clicks, self.scores, self.positions))
        self.relevance = np.concatenate(self.relevance) if has_truth else None
        self.devices = np.asarray(self.devices)
        self.unweighted = counterfactual.per_list(self.clicks, self.scores, self.positions, self.devices, {}, 1.0)

    def biased_ndcg(self) -> float:
        rows = self.unweighted
        return float(rows["dcg"].sum() / rows["ideal"].sum()) if rows["ideal"].any() else 0.0

    def ips(self, data_dir: str, source: str, clip: float, model_curve: dict | None) -> dict:
        try:
            chosen = counterfactual.propensities(data_dir, source, model_curve)
        except RankerError as err:
            if source != counterfactual.AUTO:
                raise
            logger.warning("no IPS metrics: %s", err)
            return {}
        rows = counterfactual.per_list(self.clicks, self.scores, self.positions, self.devices, chosen["curves"], clip)
        return counterfactual.summarise(self.request_ids, self.devices.tolist(), rows, chosen, clip)

    def per_list(self) -> dict:
        """Per list: click log loss, its share of the biased click nDCG@10 (None without a click)
        and, where the logs carry true grades, the nDCG@10 of the model's order by those grades."""
        ndcg = [None] * len(self.request_ids)
        if self.unweighted["ideal"].any():
            clicked, values = counterfactual.contributions(self.unweighted)
            for i, v in zip(np.flatnonzero(clicked), values):
                ndcg[i] = round(float(v), 6)
        out = {"request_id": self.request_ids, "log_loss": [round(v, 5) for v in self.log_loss],
               f"ndcg@{counterfactual.CUTOFF}": ndcg}
        if self.relevance is not None:
            true = metrics_lib.ndcg_per_list(self.relevance, self.scores, counterfactual.CUTOFF)
            out[f"true_ndcg@{counterfactual.CUTOFF}"] = true.round(5).tolist()
        return out


def _click_metrics(scorer, ds: tf.data.Dataset, sample_batches: int = 20) -> tuple[dict, tf.Tensor, _ClickLists]:
    """Click metrics of the split, the relevance logits of its first batches' shown items (the
    population the additive propensity read-off averages over) and the per-list data, in one pass."""
    auc = tf.keras.metrics.AUC(num_thresholds=2000)
    losses, count, lists, sample, kept = 0.0, 0, 0, [], _ClickLists()
    for batch in ds:
        clicked = tf.cast(batch[fs.CLICKED], tf.float32)
        mask = batch[fs.MASK] & (clicked >= 0)
        relevance, p = scorer.score(batch)
        p = tf.clip_by_value(p, 1e-7, 1 - 1e-7)
        item_loss = tf.where(mask, -(clicked * tf.math.log(p) + (1 - clicked) * tf.math.log(1 - p)), 0.0)
        losses += float(tf.reduce_sum(item_loss))
        count += int(tf.reduce_sum(tf.cast(mask, tf.int32)))
        auc.update_state(tf.boolean_mask(clicked, mask), tf.boolean_mask(p, mask))
        lists += int(tf.reduce_sum(tf.cast(tf.reduce_any(mask, axis=1), tf.int32)))
        kept.add(batch, clicked, mask, relevance, item_loss)
        if len(sample) < sample_batches:
            sample.append(tf.boolean_mask(relevance, batch[fs.MASK]))
    if not count:
        raise RankerError("the click split holds no impressions")
    kept.finish()
    return ({"log_loss": round(losses / count, 5), "auc": round(float(auc.result()), 5),
             "ndcg@10": round(kept.biased_ndcg(), 5), "lists": lists}, tf.concat(sample, 0), kept)


def _splits(split: str, data_dir: str) -> list[str]:
    wanted = {DEFAULT_SPLITS: [EVAL, JUDGED], ALL_SPLITS: list(SPLITS)}.get(split, [split])
    present = [s for s in wanted if data.has_split(data_dir, s)]
    if not present:
        raise RankerError(f"{data_dir}: none of the splits {wanted} exist")
    return present


def evaluate(data_dir: str, **options) -> dict:
    """measure(EvaluateOptions(data_dir, **options)): the metrics, written nowhere."""
    return measure(EvaluateOptions(data_dir, **options))


def measure(opts: EvaluateOptions) -> dict:
    """metrics.json's content (docs/schema.md, "`ranker evaluate` output"): judged nDCG (and per
    list), click metrics, IPS click metrics with `opts.propensities` (auto, truth, harvested, model
    or a JSON file) clipped at `opts.ips_clip`, and the learned propensity beside the harvested and
    true ones."""
    opts.check()
    data_dir, model_dir = opts.data_dir, opts.model_dir
    spec = data.data_spec(data_dir)
    if model_dir:
        scorer = KerasScorer(model_dir)
        check_spec(scorer.spec, spec, data_dir, model_dir)
    else:
        scorer = SavedModelScorer(opts.saved_model, spec, data.click_list_size(data_dir, spec))
    metrics: dict = {}
    sample, click_lists = None, {}
    for name in _splits(opts.split, data_dir):
        list_size = spec.max_list_size if name == JUDGED else scorer.list_size
        ds = data.dataset(data_dir, name, spec, list_size, EVAL_BATCH, with_request_id=True)
        logger.info("evaluating on %s", name)
        if name == JUDGED:
            metrics["judged"], metrics["judged_per_list"] = _judged_metrics(scorer, ds)
        else:
            metrics[_suffixed("clicks", name)], sample, click_lists[name] = _click_metrics(scorer, ds)
    reference = float(np.median(sample.numpy())) if sample is not None and tf.size(sample) else None
    learned = scorer.propensity(reference)
    if learned:
        metrics["propensity"] = learned
        metrics["propensity_reference_logit"] = None if reference is None else round(reference, 5)
    for name, lists in click_lists.items():
        for key, value in lists.ips(data_dir, opts.propensities, opts.ips_clip, learned).items():
            metrics[_suffixed(key, name)] = value
        metrics[_suffixed("clicks_per_list", name)] = lists.per_list()
    metrics.update(_propensity_checks(data_dir, learned))
    return metrics


def _suffixed(key: str, split: str) -> str:
    return key if split == EVAL else f"{key}_{split}"


def _propensity_checks(data_dir: str, learned: dict) -> dict:
    """The true curve and the learned one's error against it; the harvested curve, its error against
    the truth and the learned positions outside the harvested 95% intervals."""
    out: dict = {}
    truth = read_json(os.path.join(data_dir, TRUTH_FILE), {})
    impressions = read_json(os.path.join(data_dir, STATS_FILE), {}).get("impressions_by_position_device")
    harvested = read_json(os.path.join(data_dir, HARVESTED_FILE))
    if harvested and harvested.get("propensity"):
        out["propensity_harvested"] = harvested["propensity"]
        out["propensity_harvested_ci95"] = harvested.get("ci95", {})
        if learned:
            out["propensity_disagreement"] = disagreement(learned, harvested.get("ci95", {}))
    if truth.get("propensity"):
        out["propensity_truth"] = truth["propensity"]
        if learned:
            out["propensity_error"] = metrics_lib.propensity_error(learned, truth["propensity"], impressions)
        if "propensity_harvested" in out:
            out["propensity_harvested_error"] = metrics_lib.propensity_error(
                out["propensity_harvested"], truth["propensity"], impressions)
    elif truth.get("examination_rate"):  # cascade: an examination rate, not a position propensity
        out["examination_rate_truth"] = truth["examination_rate"]
    return out


def disagreement(learned: dict, intervals: dict) -> dict:
    """{device: [positions whose learned value lies outside the harvested 95% interval]}: where the
    bias tower and the model-free estimate disagree beyond the estimate's uncertainty (relevance
    leaking into the bias tower, or too little data for either)."""
    out = {}
    for device, curve in learned.items():
        bounds = intervals.get(device) or []
        outside = [k + 1 for k, (value, ci) in enumerate(zip(curve, bounds))
                   if k > 0 and ci and not ci[0] <= value <= ci[1]]
        out[device] = outside
    return out


def _check_output(output: str) -> None:
    folder = storage.parent(storage.absolute(output))
    if storage.isdir(output):
        raise RankerError(f"--output {output} is a folder; give a file path, e.g. {storage.join(output, METRICS_FILE)}")
    if not storage.isdir(folder):
        raise RankerError(f"--output {output}: no folder {folder}; create it first")
    if not storage.is_url(folder) and not os.access(folder, os.W_OK):  # object stores: found at write
        raise RankerError(f"--output {output}: cannot write into {folder}")


def evaluate_to_file(data_dir: str, **options) -> dict:
    """`ranker evaluate`: write_metrics(EvaluateOptions(data_dir, **options))."""
    return write_metrics(EvaluateOptions(data_dir, **options))


def write_metrics(opts: EvaluateOptions) -> dict:
    """measure(opts) into opts.output (default: metrics.json beside the model), propensity.png beside it."""
    if opts.output:
        _check_output(opts.output)  # before the evaluation, not after it
    result = measure(opts)
    output = opts.output or storage.join(opts.model_dir or opts.saved_model, METRICS_FILE)
    write_json(output, result)
    plot = evaluate_view.plot_propensity(result, storage.join(storage.parent(storage.absolute(output)),
                                                              evaluate_view.PROPENSITY_PLOT))
    logger.info("wrote %s%s\n%s", output, f" and {plot}" if plot else "", evaluate_view.table(result))
    return result
