"""Options of `ranker export` and `ranker validate`, one dataclass a verb (light: the CLI takes its
defaults and choices from here without importing TensorFlow)."""
from __future__ import annotations

import dataclasses
import math

from ranker import storage
from ranker.errors import RankerError
from ranker.models.counterfactual import AUTO
from ranker.serving.gate_metrics import DEFAULT_MAX_REGRESSION, GATE_METRICS


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """`ranker export`: the relevance tower of a trained model dir → BASE/<next version>/."""

    model_dir: str
    export_base: str


@dataclasses.dataclass(frozen=True)
class ValidateOptions:
    """`ranker validate`: an exported candidate, judged on `data_dir`, against a baseline."""

    candidate: str
    baseline: str | None  # the last blessed version; None on a first run
    data_dir: str
    metric: str | None = None  # None: judged-ndcg@10 with judged lists, else ips-ndcg@10
    propensities: str = AUTO  # ips-ndcg@10's (counterfactual.propensities; never "model")
    device_floor: dict[str, float] | None = None  # ips-ndcg@10 per device: {device: floor}
    min_ndcg: float | None = None  # None: gate_metrics.DEFAULT_MIN_NDCG (nDCG metrics only)
    max_log_loss: float | None = None  # click-log-loss only
    max_regression: float = DEFAULT_MAX_REGRESSION

    def check(self) -> None:
        """What can be refused before reading anything (the bounds need the metric: validate.py)."""
        if not 0.0 <= self.max_regression < math.inf:
            raise RankerError(f"--max-regression must be ≥ 0, got {self.max_regression}")
        if self.baseline and storage.absolute(self.baseline) == storage.absolute(self.candidate):
            raise RankerError("--baseline and --candidate are the same folder")
        if self.metric is not None and self.metric not in GATE_METRICS:
            raise RankerError(f"unknown --metric {self.metric!r}; choose one of {sorted(GATE_METRICS)}")
        for device, floor in (self.device_floor or {}).items():
            if not device or not 0.0 <= floor <= 1.0:
                raise RankerError(f"--device-floor takes DEVICE=VALUE with VALUE in [0, 1], got "
                                  f"{device}={floor}")
