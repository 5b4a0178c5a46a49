"""`ranker validate`: the CI model-validation gate, an exported candidate against the last blessed one.

The metric comes from `METRICS` ({name: (extractor, higher_is_better)}); `--metric` picks one, the
default is judged nDCG@10 where the data has judged lists, else IPS-weighted click nDCG@10 on the
eval split (counterfactual.py: clicks weighted by 1 / p(position, device) from truth.json or the
harvested estimate), which a model cannot win by copying the old ranker's order as it can win the
biased click nDCG. The candidate passes when it clears the bound (`--min-ndcg` for
higher-is-better metrics, `--max-log-loss` for the click log loss), every `--device-floor`, and,
given a baseline, does not regress by more than `--max-regression` beyond the 95% paired-bootstrap
interval of the change (over the lists both are evaluated on). The verdict is written into the
candidate's version folder as `BLESSED` or `NOT_BLESSED` (JSON: figures, change and interval,
metric, propensity source, reason and the SavedModel's fingerprint, verdict.py). A stale verdict is
removed before the validation starts, so a validation that fails half-way leaves none.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ranker.artifacts import EVAL, JUDGED
from ranker import storage
from ranker.errors import RankerError
from ranker.models import data
from ranker.serving import compat, verdict
from ranker.serving.options import ValidateOptions
from ranker.serving.gate_metrics import (CLICK_LOG_LOSS, DEFAULT_MIN_NDCG, IPS_NDCG,
                                         JUDGED_NDCG)

logger = logging.getLogger(__name__)



@dataclass
class Measured:
    """A metric of one SavedModel: the value, per-list values for the paired bootstrap against the
    baseline ({"request_id": [...], key: [...]}), per-device values and the propensities used."""
    value: float
    per_list: dict | None = None
    by_device: dict = field(default_factory=dict)
    propensity_source: str | None = None


def _evaluated(saved_model: str, data_dir: str, split: str, metric: str, **options) -> dict:
    from ranker.models import evaluate

    if not data.has_split(data_dir, split):
        raise RankerError(f"{data_dir}: no {split} split for --metric {metric}")
    return evaluate.evaluate(data_dir, saved_model=saved_model, split=split, **options)


def judged_ndcg(saved_model: str, data_dir: str, **options) -> Measured:
    result = _evaluated(saved_model, data_dir, JUDGED, JUDGED_NDCG)
    lists = result["judged_per_list"]
    return Measured(float(result["judged"]["ndcg@10"]), {"request_id": lists["request_id"],
                                                          "value": lists["ndcg@10"]})


def ips_ndcg(saved_model: str, data_dir: str, **options) -> Measured:
    """IPS-weighted click nDCG@10 on the eval split; propensities from truth.json, the harvested
    estimate or a file (never the candidate's own bias tower: the SavedModel has none)."""
    result = _evaluated(saved_model, data_dir, EVAL, IPS_NDCG, **options)
    if "ips" not in result:
        raise RankerError(f"--metric {IPS_NDCG}: {data_dir} has no truth.json and no usable harvested"
                          " propensities; give --propensities FILE or use --metric click-log-loss")
    lists = result["ips_per_list"]
    return Measured(float(result["ips"]["ndcg@10"]), {"request_id": lists["request_id"], "value": lists["ndcg@10"]},
                    {d: v["ndcg@10"] for d, v in result["ips_by_device"].items()}, result["ips"]["propensity_source"])


def click_log_loss(saved_model: str, data_dir: str, **options) -> Measured:
    """Log loss of σ(relevance) against the clicks of the eval split (the SavedModel has no bias tower)."""
    result = _evaluated(saved_model, data_dir, EVAL, CLICK_LOG_LOSS, **options)
    lists = result["clicks_per_list"]
    return Measured(float(result["clicks"]["log_loss"]), {"request_id": lists["request_id"],
                                                          "value": lists["log_loss"]})


Extractor = Callable[..., Measured]  # (exported version folder, data dir, **evaluate options)
METRICS: dict[str, tuple[Extractor, bool]] = {
    JUDGED_NDCG: (judged_ndcg, True),
    IPS_NDCG: (ips_ndcg, True),
    CLICK_LOG_LOSS: (click_log_loss, False),
}


def default_metric(data_dir: str) -> str:
    """judged nDCG@10 where the data has judged lists, else IPS click nDCG@10 on the eval split."""
    if data.has_split(data_dir, JUDGED):
        return JUDGED_NDCG
    if data.has_split(data_dir, EVAL):
        return IPS_NDCG
    raise RankerError(f"{data_dir}: neither a judged nor an eval split to validate on")


def _bound(metric: str, higher: bool, min_ndcg: float | None, max_log_loss: float | None) -> float | None:
    """The floor (higher is better) or ceiling (lower is better) the candidate must clear."""
    if higher:
        if max_log_loss is not None:
            raise RankerError(f"--max-log-loss applies to lower-is-better metrics, not {metric}")
        bound = DEFAULT_MIN_NDCG if min_ndcg is None else min_ndcg
        if not 0.0 <= bound <= 1.0:
            raise RankerError(f"--min-ndcg must be in [0, 1], got {bound}")
        return bound
    if min_ndcg is not None:
        raise RankerError(f"--min-ndcg applies to nDCG metrics, not {metric}; use --max-log-loss")
    if max_log_loss is not None and not 0.0 < max_log_loss < math.inf:
        raise RankerError(f"--max-log-loss must be a positive number, got {max_log_loss}")
    return max_log_loss


def decide(candidate: float, baseline: float | None, bound: float | None, max_regression: float,
           higher_is_better: bool = True, metric: str = "nDCG@10",
           interval: list[float] | None = None) -> tuple[bool, str]:
    """(blessed, one-line reason) from the figures alone. `interval`: the 95% paired-bootstrap
    interval of the candidate's improvement over the baseline (metric units, > 0 better). A
    regression larger than `max_regression` blocks only when it is beyond that interval (the
    interval's upper end below 0); without an interval, the point estimate alone decides."""
    if math.isnan(candidate):
        return False, f"candidate {metric} is NaN"
    word, symbol = ("floor", "≥") if higher_is_better else ("ceiling", "≤")
    if bound is not None and (candidate < bound if higher_is_better else candidate > bound):
        return False, (f"candidate {metric} {candidate:.4f} is {'below' if higher_is_better else 'above'}"
                       f" the {word} {bound:.4f}")
    passed = f"{symbol} {word} {bound:.4f}" if bound is not None else "(no bound)"
    if baseline is None:
        return True, f"candidate {metric} {candidate:.4f} {passed} (no baseline)"
    loss = baseline - candidate if higher_is_better else candidate - baseline
    ci = f"; change's 95% interval [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
    if loss > max_regression and (interval is None or interval[1] < 0):
        return False, (f"candidate {metric} {candidate:.4f} regresses {loss:.4f} against the baseline's"
                       f" {baseline:.4f} (allowed {max_regression:.4f}){ci}")
    if loss > max_regression:
        return True, (f"candidate {metric} {candidate:.4f} {passed}; {loss:.4f} worse than the baseline's"
                      f" {baseline:.4f} but not beyond the noise{ci}")
    return True, (f"candidate {metric} {candidate:.4f} {passed} and within {max_regression:.4f} of the"
                  f" baseline's {baseline:.4f}{ci}")


def _json_number(value: float | None) -> float | None:
    """NaN/inf as null: the verdict stays strict JSON (the reason says NaN)."""
    return value if value is not None and math.isfinite(value) else None


def _improvement(candidate: Measured, baseline: Measured | None, higher: bool) -> dict | None:
    """The candidate's paired change against the baseline, signed so that > 0 is better."""
    if baseline is None or not candidate.per_list or not baseline.per_list:
        return None
    from ranker.models.counterfactual import paired_difference

    change = paired_difference(candidate.per_list, baseline.per_list, "value")
    if change["diff"] is None:
        return None
    if not higher:
        verdicts = {"better": "worse", "worse": "better"}
        change = {**change, "diff": -change["diff"], "ci95": [-change["ci95"][1], -change["ci95"][0]],
                  "verdict": verdicts.get(change["verdict"], change["verdict"])}
    return change


def _device_floors(measured: Measured, floors: dict[str, float] | None) -> tuple[bool, str]:
    if not floors:
        return True, ""
    unknown = sorted(set(floors) - set(measured.by_device))
    if unknown:
        raise RankerError(f"--device-floor: no eval lists of device(s) {unknown}; the data has"
                          f" {sorted(measured.by_device)}")
    below = [f"{d} {measured.by_device[d]:.4f} < {floor:.4f}" for d, floor in sorted(floors.items())
             if measured.by_device[d] < floor]
    return not below, (f"; below the device floor: {', '.join(below)}" if below else "")


def validate(candidate: str, baseline: str | None, data_dir: str, **options) -> dict:
    """judge(ValidateOptions(candidate, baseline, data_dir, **options))."""
    return judge(ValidateOptions(candidate, baseline, data_dir, **options))


def judge(opts: ValidateOptions) -> dict:
    """Judges `opts.candidate` (an exported version folder); writes BLESSED or NOT_BLESSED into it."""
    opts.check()
    candidate, baseline, data_dir = opts.candidate, opts.baseline, opts.data_dir
    metric = opts.metric or default_metric(data_dir)
    extractor, higher = METRICS[metric]
    bound = _bound(metric, higher, opts.min_ndcg, opts.max_log_loss)
    if opts.device_floor and metric != IPS_NDCG:
        raise RankerError(f"--device-floor needs --metric {IPS_NDCG} (per-device click lists), not {metric}")
    if storage.isdir(candidate):
        verdict.remove_verdicts(candidate)  # before anything can fail: no stale BLESSED survives
    spec = data.data_spec(data_dir)
    for folder in filter(None, (candidate, baseline)):
        compat.check_saved_model(folder, spec)
    judged_fingerprint = verdict.fingerprint(candidate)  # of the files evaluated below
    logger.info("validating %s on %s (%s)", candidate, data_dir, metric)
    options = {"propensities": opts.propensities} if metric == IPS_NDCG else {}
    measured = extractor(candidate, data_dir, **options)
    base = extractor(baseline, data_dir, **options) if baseline else None
    change = _improvement(measured, base, higher)
    blessed, reason = decide(measured.value, base.value if base else None, bound, opts.max_regression, higher,
                             metric, change["ci95"] if change else None)
    floors_ok, floor_reason = _device_floors(measured, opts.device_floor)
    if blessed and not floors_ok:
        blessed, reason = False, reason + floor_reason
    result = {
        "blessed": blessed,
        "reason": reason,
        "metric": metric,
        "higher_is_better": higher,
        "candidate": storage.absolute(candidate),
        "candidate_value": _json_number(measured.value),
        "baseline": storage.absolute(baseline) if baseline else None,
        "baseline_value": _json_number(base.value) if base else None,
        "change": change,
        "by_device": measured.by_device or None,
        "device_floor": opts.device_floor or None,
        "propensity_source": measured.propensity_source,
        "min_ndcg": bound if higher else None,
        "max_log_loss": None if higher else bound,
        "max_regression": opts.max_regression,
        "data_dir": storage.absolute(data_dir),
        "validated_at": int(time.time()),
        verdict.FINGERPRINT_KEY: judged_fingerprint,
    }
    result["verdict_file"] = verdict.write_verdict(candidate, result)
    return result
