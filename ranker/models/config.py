"""What a trained model is: variant, sizes, dropouts and the data it was built from.

Saved as `model_config.json` in the model dir together with a copy of the resolved feature spec and
its vocabularies, so a model dir is self-contained: evaluate and export rebuild the model from it
and score any `preprocess` output.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

from ranker.errors import RankerError
from ranker.features import spec as fs

VARIANTS = ("naive", "position-feature", "pal", "additive", "oracle")
TWO_TOWER = ("pal", "additive")
LOSSES = ("pointwise", "listwise")
CONFIG_FILE = "model_config.json"
SPEC_DIR = "spec"


@dataclasses.dataclass
class ModelConfig:
    variant: str = "additive"
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
    moments: dict = dataclasses.field(default_factory=dict)  # numeric/vector: {"mean", "std"}

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise RankerError(f"unknown variant {self.variant!r}; choose one of {list(VARIANTS)}")
        if self.loss not in LOSSES:
            raise RankerError(f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}")
        for name in ("position_dropout", "bias_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise RankerError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        self.hidden_units = tuple(self.hidden_units)

    @property
    def has_bias_tower(self) -> bool:
        return self.variant in TWO_TOWER

    def save(self, model_dir: str) -> None:
        with open(os.path.join(model_dir, CONFIG_FILE), "w") as fh:
            json.dump(dataclasses.asdict(self), fh, indent=2)
            fh.write("\n")

    @classmethod
    def load(cls, model_dir: str) -> "ModelConfig":
        path = os.path.join(model_dir, CONFIG_FILE)
        if not os.path.exists(path):
            raise RankerError(f"{model_dir}: not a model dir (no {CONFIG_FILE}); run `ranker train`")
        with open(path) as fh:
            return cls(**json.load(fh))


def copy_spec_into(model_dir: str, data_spec: fs.FeatureSpec) -> fs.FeatureSpec:
    """Copies the resolved spec and its vocabularies into the model dir; returns the copy."""
    target = os.path.join(model_dir, SPEC_DIR)
    os.makedirs(os.path.join(target, fs.VOCAB_DIR), exist_ok=True)
    for feature in [f for f in data_spec.features if f.uses_vocabulary] + [fs.DEVICE]:
        source = data_spec.vocabulary_path(feature)
        name = feature if feature == fs.DEVICE else feature.name
        if os.path.exists(source):
            shutil.copyfile(source, os.path.join(target, fs.VOCAB_DIR, f"{name}.txt"))
    data_spec.save(os.path.join(target, fs.SPEC_FILENAME))
    return fs.load_spec(os.path.join(target, fs.SPEC_FILENAME))


def model_spec(model_dir: str) -> fs.FeatureSpec:
    return fs.load_spec(os.path.join(model_dir, SPEC_DIR, fs.SPEC_FILENAME))
