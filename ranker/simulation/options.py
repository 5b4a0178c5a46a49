"""Options of `ranker simulate`: names, defaults and checks, in one place (no numpy, so the CLI can
import it for its choices and defaults without slowing `--help`)."""
from __future__ import annotations

import dataclasses
import math
from ranker import storage
from ranker.errors import RankerError

WORLDS = ("synthetic", "letor", "ids")
CLICK_MODELS = ("pbm", "cascade")
NUM_SHOWN = 10  # slots of a served list
CLICK_NOISE = 0.05  # ε: p(click | seen) of an irrelevant item (at trust bias 0)
# Trust bias (Agarwal et al. 2019): the noise on examined items declines with the position k.
TRUST_BIAS_FORM = ("eps_k = eps * (1 + T / k); "
                   "p(click | seen, r, k) = eps_k + (1 - eps_k) * (2^r - 1) / (2^max - 1)")
MAX_TRUST_BIAS = (1.0 - CLICK_NOISE) / CLICK_NOISE  # keeps eps_1 = eps * (1 + T) <= 1

DEFAULT_NUM_QUERIES = 400
DEFAULT_SESSIONS_PER_QUERY = 20
DEFAULT_LOGGING_QUALITY = 0.5
DEFAULT_CLICK_MODEL = "pbm"
DEFAULT_DEVICES = ("desktop", "mobile", "tablet")
DEFAULT_TOP_EXAMINATION = 1.0
DEFAULT_TRUST_BIAS = 0.0
JUDGED_FRACTION = 0.25  # default judged queries per logged query (synthetic and ids worlds)
# The knobs `ranker run` also takes, with their defaults (the CLI passes the ones a user changed).
RUN_KNOB_DEFAULTS = {"click_model": DEFAULT_CLICK_MODEL, "devices": ",".join(DEFAULT_DEVICES),
                     "examination_curve": None, "top_examination": DEFAULT_TOP_EXAMINATION,
                     "trust_bias": DEFAULT_TRUST_BIAS, "num_judged": None}


@dataclasses.dataclass(frozen=True)
class SimulateOptions:
    """Everything `simulate_to_dir` takes; `check()` refuses what it cannot honour."""

    output_dir: str
    world: str = WORLDS[0]
    letor_train: str | None = None
    letor_test: str | None = None
    sessions_per_query: int = DEFAULT_SESSIONS_PER_QUERY
    logging_quality: float = DEFAULT_LOGGING_QUALITY
    click_model: str = DEFAULT_CLICK_MODEL
    devices: tuple[str, ...] = DEFAULT_DEVICES  # `name[:share[:eta]]` entries
    seed: int = 0  # same seed and options, byte-identical files
    num_queries: int = DEFAULT_NUM_QUERIES
    examine_all: bool = False
    num_judged: int | None = None
    examination_curve: str | None = None
    top_examination: float = DEFAULT_TOP_EXAMINATION
    trust_bias: float = DEFAULT_TRUST_BIAS
    oracle_lists: bool = False

    def judged_count(self) -> int:
        """Held-out judged queries of the synthetic and ids worlds."""
        if self.num_judged is not None:
            return self.num_judged
        return max(1, int(round(JUDGED_FRACTION * self.num_queries)))

    def check(self) -> None:
        if self.world not in WORLDS:
            raise RankerError(f"--world must be one of {', '.join(WORLDS)}, got {self.world!r}")
        self._check_letor()
        if not _is_int(self.sessions_per_query) or self.sessions_per_query < 1:
            raise RankerError(
                f"--sessions-per-query must be a positive integer, got {self.sessions_per_query!r}")
        if not (_is_number(self.logging_quality) and 0.0 <= self.logging_quality <= 1.0):
            raise RankerError(f"--logging-quality must be in [0, 1], got {self.logging_quality!r}")
        if self.click_model not in CLICK_MODELS:
            raise RankerError(
                f"--click-model must be one of {', '.join(CLICK_MODELS)}, got {self.click_model!r}")
        if self.world != "letor" and (not _is_int(self.num_queries) or self.num_queries < 1):
            raise RankerError(f"--num-queries must be at least 1, got {self.num_queries!r}")
        self._check_judged()
        if not (_is_number(self.top_examination) and 0.0 < self.top_examination <= 1.0):
            raise RankerError(f"--top-examination must be in (0, 1], got {self.top_examination!r}")
        if not (_is_number(self.trust_bias) and 0.0 <= self.trust_bias <= MAX_TRUST_BIAS):
            raise RankerError(f"--trust-bias must be in [0, {MAX_TRUST_BIAS:g}] (so that "
                              f"eps*(1+T) <= 1 at the top), got {self.trust_bias!r}")
        if self.examination_curve is not None and not storage.isfile(self.examination_curve):
            raise RankerError(f"--examination-curve {self.examination_curve}: file not found")

    def _check_letor(self) -> None:
        if self.world == "letor" and not self.letor_train:
            raise RankerError("--world letor needs --letor-train PATH")
        if self.world != "letor" and (self.letor_train or self.letor_test):
            raise RankerError("--letor-train/--letor-test only apply to --world letor")
        for flag, path in (("--letor-train", self.letor_train), ("--letor-test", self.letor_test)):
            if path and not storage.isfile(path):
                raise RankerError(f"{flag} {path}: file not found")

    def _check_judged(self) -> None:
        if self.num_judged is None:
            return
        if self.world == "letor":
            raise RankerError("--num-judged applies to the synthetic and ids worlds "
                              "(a LETOR world's judged lists are the queries of --letor-test)")
        if not _is_int(self.num_judged) or self.num_judged < 0:
            raise RankerError(f"--num-judged must be a non-negative integer, got {self.num_judged!r}")
        if self.world == "ids" and self.num_judged > self.num_queries:
            raise RankerError(f"--num-judged {self.num_judged}: the ids world judges logged queries, "
                              f"and there are only {self.num_queries} (--num-queries)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
