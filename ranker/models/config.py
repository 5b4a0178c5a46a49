"""What a trained model is: variant, sizes, dropouts and the data it was built from.

Saved as `model_config.json` in the model dir together with a copy of the resolved feature spec and
its vocabularies, so a model dir is self-contained: evaluate and export rebuild the model from it
and score any `preprocess` output.
"""
from __future__ import annotations

import dataclasses
import os

from ranker.artifacts import MODEL_CONFIG as CONFIG_FILE
from ranker.artifacts import TRAIN
from ranker import artifacts, storage
from ranker.errors import RankerError
from ranker.features import spec as fs

VARIANTS = ("naive", "position-feature", "pal", "additive", "oracle", "ips", "dla")
STRATEGIES = ("default", "mirrored", "multi-worker")  # tf.distribute strategies of `ranker train`
BACKUP_EVERY = 100  # batches between mid-epoch backups (Keras BackupAndRestore) a killed job resumes from
TWO_TOWER = ("pal", "additive")
LOSSES = ("pointwise", "listwise")
LR_SCHEDULES = ("cosine", "constant")  # warm-up then cosine decay over the step budget, or flat
NUMERIC_TRANSFORMS = ("log1p", "standard")  # signed log1p then standardise, or standardise only
DNN_NORMS = ("none", "layer")  # LayerNormalization of the relevance DNN's input, or none
SPEC_DIR = "spec"
MAX_LEARNING_RATE = 1.0


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A real number (int or float, not bool); NaN fails every range comparison after it."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flag(name: str) -> str:
    return name.replace("_", "-")


@dataclasses.dataclass
class ModelConfig:
    # The default two-tower variant: chosen on the scoreboard's validation half (benchmarks/
    # scoreboard.py; README "How it compares"), PAL over additive.
    variant: str = "pal"
    loss: str = "pointwise"
    embedding_dim: int = 8
    hidden_units: tuple[int, ...] = (64, 32)
    num_positions: int = 20  # position buckets of the bias tower; later positions share the last
    position_dropout: float = 0.1
    bias_dropout: float = 0.0
    learning_rate: float = 3e-3
    batch_size: int = 128
    epochs: int = 5
    seed: int = 0
    train_list_size: int = 10
    max_relevance: float = 4.0
    # Training recipe (schedule.py): `epochs` is the resolved maximum, stopped early on eval click
    # log-loss after `patience` epochs without improvement (0: never).
    min_steps: int = 2000
    patience: int = 3
    lr_schedule: str = "cosine"
    bias_learning_rate: float = 3e-2
    steps_per_epoch: int = 0
    split: str = TRAIN
    ips_clip: float = 10.0  # the largest inverse-propensity weight (ips, dla)
    propensities: dict = dataclasses.field(default_factory=dict)  # ips, pal: {device: [1.0, p2, …]}
    propensity_source: str = ""
    moments: dict = dataclasses.field(default_factory=dict)  # numeric/vector: data.feature_moments
    numeric_transform: str = "log1p"
    dnn_dropout: float = 0.0
    dnn_norm: str = "none"
    # L2 on the tables of declared crosses (embeddings, first-order weights), in impressions: their
    # Σ w² weighs like this many training impressions' click log-loss (a Gaussian prior that shrinks
    # a rarely seen pair toward what its components say; 0: none). Chosen on the ids world.
    cross_l2: float = 22.0
    # pal: the harvested examination curve as a Gaussian prior on the bias tower (prior.py), times
    # this weight (0: none)
    propensity_prior_weight: float = 3.0
    propensity_prior: dict = dataclasses.field(default_factory=dict)  # prior.harvested_prior
    train_items: int = 0  # shown items of the training split (the L2 and prior's scale)
    # What the model was trained on (resume.data_fingerprint): a resume on other data is refused.
    data_fingerprint: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise RankerError(f"unknown variant {self.variant!r}; choose one of {list(VARIANTS)}")
        if self.loss not in LOSSES:
            raise RankerError(f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}")
        for name in ("position_dropout", "bias_dropout"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 <= value < 1.0):
                raise RankerError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        self.hidden_units = tuple(self.hidden_units)
        self._check_relevance_sizes()
        self._check_recipe()

    def _check_recipe(self) -> None:
        """Every numeric flag in its range: a rate above 1 only diverges (Adam moves each weight by
        about the rate per step), so rates are in (0, 1]; NaN and infinities are refused."""
        if self.lr_schedule not in LR_SCHEDULES:
            raise RankerError(f"unknown --lr-schedule {self.lr_schedule!r}; choose one of {list(LR_SCHEDULES)}")
        for name in ("learning_rate", "bias_learning_rate"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 < value <= MAX_LEARNING_RATE):
                raise RankerError(f"--{_flag(name)} must be a number in (0, {MAX_LEARNING_RATE}], got {value!r}")
        for name, least in (("batch_size", 1), ("epochs", 1), ("min_steps", 1), ("patience", 0),
                            ("num_positions", 1), ("seed", 0)):
            value = getattr(self, name)
            if not (_is_int(value) and value >= least):
                raise RankerError(f"--{_flag(name)} must be an integer of at least {least}, got {value!r}")
        if not self.seed < 2**32:
            raise RankerError(f"--seed must be below 2**32, got {self.seed}")
        if not (_is_number(self.propensity_prior_weight) and 0.0 <= self.propensity_prior_weight < float("inf")):
            raise RankerError("--propensity-prior-weight must be a finite number of at least 0, got "
                              f"{self.propensity_prior_weight!r}")
        if not (_is_number(self.ips_clip) and 1.0 <= self.ips_clip < float("inf")):
            raise RankerError(f"--ips-clip must be a finite number of at least 1, got {self.ips_clip!r}")
        if self.variant == "dla" and self.loss != "listwise":
            raise RankerError("dla trains with softmax (listwise) losses; drop --loss pointwise")

    def _check_relevance_sizes(self) -> None:
        def positive(value) -> bool:
            return _is_int(value) and value > 0

        if not positive(self.embedding_dim):
            raise RankerError(f"--embedding-dim must be a positive integer, got {self.embedding_dim!r}")
        if not self.hidden_units or not all(positive(u) for u in self.hidden_units):
            raise RankerError(f"--hidden-units must be positive integers, got {list(self.hidden_units)}")
        if not (_is_number(self.dnn_dropout) and 0.0 <= self.dnn_dropout < 1.0):
            raise RankerError(f"--dnn-dropout must be in [0, 1), got {self.dnn_dropout}")
        if self.numeric_transform not in NUMERIC_TRANSFORMS:
            raise RankerError(f"unknown numeric transform {self.numeric_transform!r}; choose one of"
                              f" {list(NUMERIC_TRANSFORMS)}")
        if not (_is_number(self.cross_l2) and 0.0 <= self.cross_l2 < float("inf")):
            raise RankerError(f"--cross-l2 must be a finite number of at least 0, got {self.cross_l2!r}")
        if self.dnn_norm not in DNN_NORMS:
            raise RankerError(f"unknown DNN normalisation {self.dnn_norm!r}; choose one of {list(DNN_NORMS)}")

    @property
    def has_bias_tower(self) -> bool:
        """A learned bias tower: additive, and pal unless given fixed propensities."""
        return self.variant in TWO_TOWER and not self.known_examination

    @property
    def known_examination(self) -> bool:
        """Examination from a fixed curve (`propensities`): ips always, pal with --propensities."""
        return self.variant == "ips" or (self.variant == "pal" and bool(self.propensities))

    def save(self, model_dir: str) -> None:
        """Atomically; NaN or infinities (not JSON) are a RankerError."""
        artifacts.write_json(os.path.join(model_dir, CONFIG_FILE), dataclasses.asdict(self))

    @classmethod
    def load(cls, model_dir: str) -> "ModelConfig":
        path = os.path.join(model_dir, CONFIG_FILE)
        if not storage.exists(path):
            raise RankerError(f"{model_dir}: not a model dir (no {CONFIG_FILE}); run `ranker train`")
        stored = artifacts.read_json(path)
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(stored, dict) or set(stored) - fields:
            unknown = sorted(set(stored) - fields) if isinstance(stored, dict) else "not an object"
            raise RankerError(f"{path}: not a ranker model config ({unknown}); --restart to train afresh")
        return cls(**stored)


def copy_spec_into(model_dir: str, data_spec: fs.FeatureSpec) -> fs.FeatureSpec:
    """Copies the resolved spec and its vocabularies into the model dir; returns the copy."""
    target = os.path.join(model_dir, SPEC_DIR)
    storage.makedirs(os.path.join(target, fs.VOCAB_DIR))
    for feature in [f for f in data_spec.features if f.uses_vocabulary] + [fs.DEVICE]:
        source = data_spec.vocabulary_path(feature)
        name = feature if feature == fs.DEVICE else feature.name
        if storage.exists(source):
            storage.copy(source, os.path.join(target, fs.VOCAB_DIR, f"{name}.txt"))
    data_spec.save(os.path.join(target, fs.SPEC_FILENAME))
    return fs.load_spec(os.path.join(target, fs.SPEC_FILENAME))


def model_spec(model_dir: str) -> fs.FeatureSpec:
    return fs.load_spec(os.path.join(model_dir, SPEC_DIR, fs.SPEC_FILENAME))
