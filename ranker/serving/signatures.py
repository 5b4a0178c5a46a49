"""The served module: the relevance tower alone, behind two signatures.

- `serving_default`: `examples`, a 1-D string tensor of serialized tf.Examples (one per candidate,
  each holding the candidate's item features and its request's context features), scored as one
  list → `scores` float `[N]`.
- `score_lists`: one named raw tensor per spec feature, `[lists, candidates]` (vectors
  `[lists, candidates, n]`; context features repeated per candidate) → `scores` `[lists, candidates]`.

Position and device are not inputs. The relevance tower scores each candidate on its own, so
TF Serving's request batching (which concatenates the `examples` of several requests) leaves every
score unchanged.
"""
from __future__ import annotations

import tensorflow as tf

from ranker.features import spec as fs
from ranker.features import tensors

SERVING_DEFAULT = "serving_default"
RAW_SIGNATURE = "score_lists"  # == ranker.models.evaluate.RAW_SIGNATURE
EXAMPLES = "examples"
SCORES = "scores"
TOWER_ATTRIBUTE = "relevance_tower"


def placeholder_features(spec: fs.FeatureSpec, lists: int = 1, candidates: int = 1) -> dict:
    """Parse-default features `[lists, candidates(, n)]` plus the mask: enough to build a tower."""
    shape = [lists, candidates]
    out = {}
    for f in spec.features:
        if f.kind == fs.CATEGORICAL:
            out[f.name] = tf.fill(shape, "")
        elif f.kind == fs.NUMERIC:
            out[f.name] = tf.zeros(shape, tf.float32)
        else:
            out[f.name] = tf.zeros(shape + [f.length], tf.float32)
    out[fs.MASK] = tf.ones(shape, tf.bool)
    return out


def raw_input_specs(spec: fs.FeatureSpec) -> dict[str, tf.TensorSpec]:
    """`score_lists` inputs: one `[lists, candidates(, n)]` tensor per spec feature."""
    return {f.name: tensors.tensor_spec(f, 2) for f in spec.features}


def build_module(tower: tf.keras.layers.Layer, spec: fs.FeatureSpec) -> tf.Module:
    """A tf.Module tracking only `tower`, with `serve_examples` and `score_lists` tf.functions.

    `tower` must already be built (its variables created and restored).
    """
    module = tf.Module(name="ranker_relevance")
    setattr(module, TOWER_ATTRIBUTE, tower)
    parse_spec = tensors.serving_parse_spec(spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES)])
    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, parse_spec)
        features = {name: tf.expand_dims(value, 0) for name, value in parsed.items()}  # one list
        features[fs.MASK] = tf.ones([1, tf.size(examples)], tf.bool)
        return {SCORES: tf.squeeze(tower(features), axis=0)}

    @tf.function
    def score_lists(**features):
        reference = features[spec.features[0].name]
        features = dict(features)
        features[fs.MASK] = tf.ones(tf.shape(reference)[:2], tf.bool)
        return {SCORES: tower(features)}

    module.serve_examples = serve_examples
    module.score_lists = score_lists
    return module


def signatures(module: tf.Module, spec: fs.FeatureSpec) -> dict:
    """The signature map `tf.saved_model.save` takes."""
    return {
        SERVING_DEFAULT: module.serve_examples.get_concrete_function(),
        RAW_SIGNATURE: module.score_lists.get_concrete_function(**raw_input_specs(spec)),
    }
