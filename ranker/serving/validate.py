"""`ranker validate`: the CI model-validation gate, an exported candidate against the last blessed one.

The metric is judged nDCG@10 (true labels), or click nDCG@10 on the eval split where the data has
no judged lists. The candidate passes when it reaches `min_ndcg` and, given a baseline, loses at
most `max_regression` against it. The verdict is written into the candidate's version folder as
`BLESSED` or `NOT_BLESSED` (JSON: figures and reason); TF Serving ignores files there, and CI finds
the verdict beside the model it judged. A stale verdict of an earlier run is removed first.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

from ranker.errors import RankerError
from ranker.models import data

BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"


def metric_split(data_dir: str) -> tuple[str, str]:
    """(split to evaluate, metrics.json section holding its ndcg@10)."""
    if data.has_split(data_dir, "judged"):
        return "judged", "judged"
    if data.has_split(data_dir, "eval"):
        return "eval", "clicks"
    raise RankerError(f"{data_dir}: neither a judged nor an eval split to validate on")


def model_ndcg(saved_model: str, data_dir: str) -> float:
    """nDCG@10 of an exported version folder (its `score_lists` signature) on the gate's split."""
    from ranker.models import evaluate

    if not os.path.exists(os.path.join(saved_model, "saved_model.pb")):
        raise RankerError(f"{saved_model}: no saved_model.pb; give an exported version folder (BASE/<n>)")
    split, section = metric_split(data_dir)
    return float(evaluate.evaluate(data_dir, saved_model=saved_model, split=split)[section]["ndcg@10"])


def decide(candidate: float, baseline: float | None, min_ndcg: float,
           max_regression: float) -> tuple[bool, str]:
    """(blessed, one-line reason) from the figures alone."""
    if math.isnan(candidate):
        return False, "candidate nDCG@10 is NaN"
    if candidate < min_ndcg:
        return False, f"candidate nDCG@10 {candidate:.4f} is below the floor {min_ndcg:.4f}"
    if baseline is None:
        return True, f"candidate nDCG@10 {candidate:.4f} ≥ floor {min_ndcg:.4f} (no baseline)"
    if candidate < baseline - max_regression:
        return False, (f"candidate nDCG@10 {candidate:.4f} regresses {baseline - candidate:.4f} against"
                       f" the baseline's {baseline:.4f} (allowed {max_regression:.4f})")
    return True, (f"candidate nDCG@10 {candidate:.4f} ≥ floor {min_ndcg:.4f} and within"
                  f" {max_regression:.4f} of the baseline's {baseline:.4f}")


def validate(candidate: str, baseline: str | None, data_dir: str, min_ndcg: float = 0.5,
             max_regression: float = 0.01) -> dict:
    """Judges `candidate` (an exported version folder); writes BLESSED or NOT_BLESSED into it."""
    if not 0.0 <= min_ndcg <= 1.0:
        raise RankerError(f"--min-ndcg must be in [0, 1], got {min_ndcg}")
    if max_regression < 0:
        raise RankerError(f"--max-regression must be ≥ 0, got {max_regression}")
    if baseline and os.path.abspath(baseline) == os.path.abspath(candidate):
        raise RankerError("--baseline and --candidate are the same folder")
    split, section = metric_split(data_dir)
    print(f"validating {candidate} on {split} …", file=sys.stderr)
    candidate_ndcg = model_ndcg(candidate, data_dir)
    baseline_ndcg = model_ndcg(baseline, data_dir) if baseline else None
    blessed, reason = decide(candidate_ndcg, baseline_ndcg, min_ndcg, max_regression)
    result = {
        "blessed": blessed,
        "reason": reason,
        "metric": f"{section} ndcg@10",
        "candidate": os.path.abspath(candidate),
        "candidate_ndcg@10": candidate_ndcg,
        "baseline": os.path.abspath(baseline) if baseline else None,
        "baseline_ndcg@10": baseline_ndcg,
        "min_ndcg": min_ndcg,
        "max_regression": max_regression,
        "data_dir": os.path.abspath(data_dir),
        "validated_at": int(time.time()),
    }
    for name in (BLESSED, NOT_BLESSED):
        stale = os.path.join(candidate, name)
        if os.path.exists(stale):
            os.remove(stale)
    path = os.path.join(candidate, BLESSED if blessed else NOT_BLESSED)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    result["verdict_file"] = path
    return result
