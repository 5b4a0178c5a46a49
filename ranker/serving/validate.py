"""`ranker validate`: the CI model-validation gate, an exported candidate against the last blessed one.

The metric comes from `METRICS` ({name: (extractor, higher_is_better)}); `--metric` picks one, the
default is judged nDCG@10 where the data has judged lists, else the click log loss of σ(relevance)
on the eval split (lower is better). The candidate passes when it clears the bound (`--min-ndcg`
for higher-is-better metrics, `--max-log-loss` for lower-is-better ones) and, given a baseline,
loses at most `--max-regression` (in the metric's units) against it. The verdict is written into
the candidate's version folder as `BLESSED` or `NOT_BLESSED` (JSON: figures, reason, metric and the
SavedModel's fingerprint, verdict.py). A stale verdict is removed before the validation starts, so a
validation that fails half-way leaves none.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Callable

from ranker.artifacts import EVAL, JUDGED
from ranker.errors import RankerError
from ranker.models import data
from ranker.serving import compat, verdict
from ranker.serving.verdict import BLESSED, NOT_BLESSED  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

JUDGED_NDCG = "judged-ndcg@10"
CLICK_LOG_LOSS = "click-log-loss"
DEFAULT_MIN_NDCG = 0.5
DEFAULT_MAX_REGRESSION = 0.01


def _evaluated(saved_model: str, data_dir: str, split: str, metric: str) -> dict:
    from ranker.models import evaluate

    if not data.has_split(data_dir, split):
        raise RankerError(f"{data_dir}: no {split} split for --metric {metric}")
    return evaluate.evaluate(data_dir, saved_model=saved_model, split=split)


def judged_ndcg(saved_model: str, data_dir: str) -> float:
    return float(_evaluated(saved_model, data_dir, JUDGED, JUDGED_NDCG)["judged"]["ndcg@10"])


def click_log_loss(saved_model: str, data_dir: str) -> float:
    """Log loss of σ(relevance) against the clicks of the eval split (the SavedModel has no bias tower)."""
    return float(_evaluated(saved_model, data_dir, EVAL, CLICK_LOG_LOSS)["clicks"]["log_loss"])


Extractor = Callable[[str, str], float]  # (exported version folder, data dir) → metric value
METRICS: dict[str, tuple[Extractor, bool]] = {
    JUDGED_NDCG: (judged_ndcg, True),
    CLICK_LOG_LOSS: (click_log_loss, False),
}


def default_metric(data_dir: str) -> str:
    if data.has_split(data_dir, JUDGED):
        return JUDGED_NDCG
    if data.has_split(data_dir, EVAL):
        return CLICK_LOG_LOSS
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
           higher_is_better: bool = True, metric: str = "nDCG@10") -> tuple[bool, str]:
    """(blessed, one-line reason) from the figures alone."""
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
    if loss > max_regression:
        return False, (f"candidate {metric} {candidate:.4f} regresses {loss:.4f} against the baseline's"
                       f" {baseline:.4f} (allowed {max_regression:.4f})")
    return True, (f"candidate {metric} {candidate:.4f} {passed} and within {max_regression:.4f} of the"
                  f" baseline's {baseline:.4f}")


def _json_number(value: float | None) -> float | None:
    """NaN/inf as null: the verdict stays strict JSON (the reason says NaN)."""
    return value if value is not None and math.isfinite(value) else None


def validate(candidate: str, baseline: str | None, data_dir: str, min_ndcg: float | None = None,
             max_regression: float = DEFAULT_MAX_REGRESSION, metric: str | None = None,
             max_log_loss: float | None = None) -> dict:
    """Judges `candidate` (an exported version folder); writes BLESSED or NOT_BLESSED into it."""
    if not 0.0 <= max_regression < math.inf:
        raise RankerError(f"--max-regression must be ≥ 0, got {max_regression}")
    if baseline and os.path.abspath(baseline) == os.path.abspath(candidate):
        raise RankerError("--baseline and --candidate are the same folder")
    metric = metric or default_metric(data_dir)
    if metric not in METRICS:
        raise RankerError(f"unknown --metric {metric!r}; choose one of {sorted(METRICS)}")
    extractor, higher = METRICS[metric]
    bound = _bound(metric, higher, min_ndcg, max_log_loss)
    if os.path.isdir(candidate):
        verdict.remove_verdicts(candidate)  # before anything can fail: no stale BLESSED survives
    spec = data.data_spec(data_dir)
    for folder in filter(None, (candidate, baseline)):
        compat.check_saved_model(folder, spec)
    judged_fingerprint = verdict.fingerprint(candidate)  # of the files evaluated below
    logger.info("validating %s on %s (%s)", candidate, data_dir, metric)
    candidate_value = extractor(candidate, data_dir)
    baseline_value = extractor(baseline, data_dir) if baseline else None
    blessed, reason = decide(candidate_value, baseline_value, bound, max_regression, higher, metric)
    result = {
        "blessed": blessed,
        "reason": reason,
        "metric": metric,
        "higher_is_better": higher,
        "candidate": os.path.abspath(candidate),
        "candidate_value": _json_number(candidate_value),
        "baseline": os.path.abspath(baseline) if baseline else None,
        "baseline_value": _json_number(baseline_value),
        "min_ndcg": bound if higher else None,
        "max_log_loss": None if higher else bound,
        "max_regression": max_regression,
        "data_dir": os.path.abspath(data_dir),
        "validated_at": int(time.time()),
        verdict.FINGERPRINT_KEY: judged_fingerprint,
    }
    result["verdict_file"] = verdict.write_verdict(candidate, result)
    return result
