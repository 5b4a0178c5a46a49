"""Options of `ranker train` and `ranker evaluate`, one dataclass a verb (light: no TensorFlow, so the
CLI takes its defaults and choices from here without slowing `--help`).

`ranker train`'s model hyperparameters are ModelConfig's fields (config.py, saved with the model);
TrainOptions holds the job around them: where, how long, how distributed, resume or restart.
"""
from __future__ import annotations

import dataclasses

from ranker.artifacts import SPLITS
from ranker.errors import RankerError
from ranker.models import counterfactual
from ranker.models.config import BACKUP_EVERY, STRATEGIES, ModelConfig

# train's input: parsed batches kept in memory, in a local file (memory bounded), or parsed anew
# every epoch; auto: memory when they fit, else disk
CACHE_MODES = ("auto", "memory", "disk", "none")

# Filled in by `train` from the data and the model dir, never given.
DERIVED = frozenset({"train_list_size", "max_relevance", "moments", "steps_per_epoch", "propensities",
                     "propensity_source", "data_fingerprint", "propensity_prior",
                     "train_items"})
HPARAMS = frozenset(f.name for f in dataclasses.fields(ModelConfig)) - DERIVED
DEFAULT_SPLITS = "default"  # evaluate: eval and judged
ALL_SPLITS = "all"
EVALUATE_SPLITS = (DEFAULT_SPLITS, ALL_SPLITS, *SPLITS)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """One `ranker train` job; `hparams` are ModelConfig fields (batch_size, seed, learning_rate,
    bias_learning_rate, min_steps, patience, lr_schedule, split, ips_clip, dropouts, sizes…)."""

    data_dir: str
    model_dir: str
    variant: str = ModelConfig.variant
    epochs: int | None = None  # the maximum; None: clip(ceil(min_steps / steps per epoch), 3, 100)
    loss: str | None = None  # None: listwise for dla (its softmax losses), pointwise otherwise
    verbose: int = 1  # Keras fit's progress
    strategy: str = STRATEGIES[0]
    backup_every: int = BACKUP_EVERY
    # ips and pal: a JSON file {device: [p1, …]}, "harvested" or "truth" (None: ips reads
    # truth.json, pal learns its bias tower)
    propensities: str | None = None
    restart: bool = False  # delete the model dir's training outputs first
    input_cache: str = CACHE_MODES[0]
    hparams: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, data_dir: str, model_dir: str, **options) -> "TrainOptions":
        """Job fields by name; every other keyword is a hyperparameter."""
        job = {f.name for f in dataclasses.fields(cls)} - {"data_dir", "model_dir", "hparams"}
        return cls(data_dir, model_dir, **{k: v for k, v in options.items() if k in job},
                   hparams={k: v for k, v in options.items() if k not in job})

    def config_fields(self) -> dict:
        """ModelConfig's keyword arguments: the hyperparameters with variant and loss resolved."""
        unknown = sorted(set(self.hparams) - HPARAMS)
        if unknown:
            raise RankerError(f"train: unknown option(s) {unknown}")
        loss = self.loss or ("listwise" if self.variant == "dla" else "pointwise")
        return {**self.hparams, "variant": self.variant, "loss": loss}

    def check(self) -> None:
        ModelConfig(**self.config_fields())  # every hyperparameter range-checked
        value = self.backup_every
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RankerError(f"--backup-every must be an integer of at least 0, got {value!r}")
        if self.input_cache not in CACHE_MODES:
            raise RankerError(f"unknown --input-cache {self.input_cache!r}; choose one of {list(CACHE_MODES)}")
        if self.strategy not in STRATEGIES:
            raise RankerError(f"unknown --strategy {self.strategy!r}; choose one of {list(STRATEGIES)}")


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """One `ranker evaluate`: a trained model dir (full click model) or an exported SavedModel
    (relevance only), on some splits of a preprocess output."""

    data_dir: str
    model_dir: str | None = None
    saved_model: str | None = None
    split: str = DEFAULT_SPLITS
    output: str | None = None  # metrics.json's path; None: beside the model
    propensities: str = counterfactual.AUTO  # of the IPS click metrics (counterfactual.propensities)
    ips_clip: float = counterfactual.DEFAULT_CLIP

    def check(self) -> None:
        if bool(self.model_dir) == bool(self.saved_model):
            raise RankerError("evaluate: give exactly one of --model-dir or --saved-model")
        if self.split not in EVALUATE_SPLITS:
            raise RankerError(f"unknown --split {self.split!r}; choose one of {list(EVALUATE_SPLITS)}")
        if not 1.0 <= self.ips_clip < float("inf"):
            raise RankerError(f"--ips-clip must be a number ≥ 1, got {self.ips_clip}")
