"""The served module: the relevance tower alone, behind two signatures.

- `serving_default`: `examples`, a 1-D string tensor of serialized tf.Examples (one per candidate,
  each holding the candidate's item features and its request's context features), scored as one
  list → `scores` float `[N]`.
- `score_lists`: one named raw tensor per spec feature, `[lists, candidates]` (vectors
  `[lists, candidates, n]`; context features repeated per candidate) → `scores` `[lists, candidates]`.
- `score_elwc`: `elwcs`, a 1-D string tensor of serialized ExampleListWithContext (one per list:
  context features once in `context`, one tf.Example of item features per candidate) → `scores`
  `[lists, longest list]`; positions past a list's end are `-inf` (an empty list: a row of `-inf`,
  or `[1, 0]` when it is the only list).

Numeric and vector features are accepted as int64 or float (parsing.py).

Position and device are not inputs. The relevance tower scores each candidate on its own, so
TF Serving's request batching (which concatenates the `examples` of several requests) leaves every
score unchanged.
"""
from __future__ import annotations

import tensorflow as tf

# The names are part of the export's contract (evaluate reads score_lists too): ranker.artifacts.
from ranker.artifacts import (ELWC_SIGNATURE, ELWCS, EXAMPLES, RAW_SIGNATURE,  # noqa: F401
                              SCORES, SERVING_DEFAULT)
from ranker.features import spec as fs
from ranker.features import tensors
from ranker.serving import parsing

PADDING_SCORE = float("-inf")  # score_elwc: positions past the end of a list
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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES)])
    def serve_examples(examples):
        parsed = parsing.parse_examples(examples, spec.features)
        features = {name: tf.expand_dims(value, 0) for name, value in parsed.items()}  # one list
        features[fs.MASK] = tf.ones([1, tf.size(examples)], tf.bool)
        return {SCORES: tf.squeeze(tower(features), axis=0)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ELWCS)])
    def score_elwc(elwcs):
        features, mask = parsing.parse_elwc(elwcs, spec)
        features[fs.MASK] = mask
        scores = tower(features)
        return {SCORES: tf.where(mask, scores, tf.fill(tf.shape(scores), PADDING_SCORE))}

    @tf.function
    def score_lists(**features):
        reference = features[spec.features[0].name]
        features = dict(features)
        features[fs.MASK] = tf.ones(tf.shape(reference)[:2], tf.bool)
        return {SCORES: tower(features)}

    module.serve_examples = serve_examples
    module.score_lists = score_lists
    module.score_elwc = score_elwc
    return module


def signatures(module: tf.Module, spec: fs.FeatureSpec) -> dict:
    """The signature map `tf.saved_model.save` takes."""
    return {
        SERVING_DEFAULT: module.serve_examples.get_concrete_function(),
        RAW_SIGNATURE: module.score_lists.get_concrete_function(**raw_input_specs(spec)),
        ELWC_SIGNATURE: module.score_elwc.get_concrete_function(),
    }
