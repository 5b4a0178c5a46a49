"""Options of `ranker preprocess` (light: no Beam, so the CLI's --help stays fast)."""
from __future__ import annotations

import dataclasses

from ranker.errors import RankerError

DEFAULT_EVAL_FRACTION = 0.1  # requests hashed into the eval split
DEFAULT_MAX_DEAD_LETTER_FRACTION = 0.1  # the job fails (exit 2) above this share of lines
LOCAL_PARALLEL_MIB = 32  # raw log MiB (estimated) from which the local runner uses every core


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """One `ranker preprocess` run; `beam_args` pass through to Beam (--runner, --project, …)."""

    input_pattern: str  # a file, a folder or a glob of .jsonl, .jsonl.gz or .parquet logs
    output_dir: str  # replaced only when the run succeeds
    feature_spec_path: str | None = None  # None: feature_spec.json beside the logs
    beam_args: tuple[str, ...] = ()
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    max_dead_letter_fraction: float = DEFAULT_MAX_DEAD_LETTER_FRACTION

    def check(self) -> None:
        if not 0.0 <= self.max_dead_letter_fraction <= 1.0:
            raise RankerError(f"--max-dead-letter-fraction must be in [0, 1], got "
                              f"{self.max_dead_letter_fraction}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise RankerError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
