"""What `evaluate` scores lists with: a trained model dir (relevance and the full click model) or an
exported SavedModel's raw-tensor signature (relevance only)."""
from __future__ import annotations

import tensorflow as tf

from ranker.artifacts import RAW_SIGNATURE, saved_model_file
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.models import inputs


class KerasScorer:
    """Scores lists with a trained model dir: relevance logits and the full click model."""

    def __init__(self, model_dir: str):
        from ranker.models.train import load_trained

        self.model, self.config, self.spec = load_trained(model_dir)
        self.list_size = self.config.train_list_size

    def relevance(self, features: dict) -> tf.Tensor:
        without_bias_inputs = {k: v for k, v in features.items() if k not in (fs.POSITION, fs.DEVICE)}
        return self.model.relevance_tower(without_bias_inputs)

    def score(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        """(relevance logits for ranking, p(click) of the full model) in one pass of the towers;
        only the position-feature baseline needs a second pass (ranked at its fixed position)."""
        logits = self.model(features)
        log_p, _ = self.model.click_log_probs(features, logits=logits)
        if self.config.variant == "position-feature":
            return self.relevance(features), tf.exp(log_p)
        return logits["relevance"], tf.exp(log_p)

    def propensity(self, reference_logit: float | None = None) -> dict:
        return self.model.propensity(self.list_size, reference_logit)


class SavedModelScorer:
    """Scores lists with an exported SavedModel's raw-tensor signature (relevance only)."""

    def __init__(self, saved_model_dir: str, spec: fs.FeatureSpec, list_size: int):
        from ranker.serving.compat import check_saved_model

        saved_model_file(saved_model_dir)
        check_saved_model(saved_model_dir, spec)  # a foreign SavedModel or another spec: one line
        try:
            self.signature = tf.saved_model.load(saved_model_dir).signatures[RAW_SIGNATURE]
        except (OSError, ValueError, tf.errors.OpError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise RankerError(f"{saved_model_dir}: the SavedModel does not load ({reason})") from None
        self.spec = spec
        self.list_size = list_size

    def relevance(self, features: dict) -> tf.Tensor:
        list_size = tf.shape(features[fs.MASK])[1]
        raw = {}
        for f in self.spec.features:
            rank = 3 if f.kind == fs.VECTOR else 2
            raw[f.name] = inputs.broadcast_to_list(features[f.name], list_size, rank)
        return self.signature(**raw)["scores"]

    def score(self, features: dict) -> tuple[tf.Tensor, tf.Tensor]:
        relevance = self.relevance(features)
        return relevance, tf.sigmoid(relevance)

    def propensity(self, reference_logit: float | None = None) -> dict:
        return {}
