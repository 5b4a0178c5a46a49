"""In-graph parsing of served requests: tf.Examples and ExampleListWithContext (ELWC).

Numbers are accepted as int or float: a numeric or vector feature may arrive as a `float_list` or
an `int64_list` (ints are converted to float32). `tf.io.parse_example` refuses a dtype other than
the declared one, so numbers are read with `tf.io.decode_proto` over a wire-compatible copy of
`tf.train.Example`'s messages (sub-messages declared as bytes, as TF-Ranking's own ELWC parser
does); strings still go through `tf.io.parse_example`. A present numeric feature must hold exactly
one value (a vector: exactly `length`); a missing one takes the training parse default (0.0).
"""
from __future__ import annotations

import functools

import tensorflow as tf
from google.protobuf import descriptor_pb2 as pb

from ranker.features import spec as fs
from ranker.features import tensors

_PACKAGE = "ranker.serving.wire"
_GATE_KEY = "__ranker_serving_gate__"  # requested from parse_example only to validate the examples
_BYTES, _STRING = pb.FieldDescriptorProto.TYPE_BYTES, pb.FieldDescriptorProto.TYPE_STRING
_FLOAT, _INT64 = pb.FieldDescriptorProto.TYPE_FLOAT, pb.FieldDescriptorProto.TYPE_INT64
_REPEATED = pb.FieldDescriptorProto.LABEL_REPEATED
# message: [(field, number, type, repeated)], field numbers as in tensorflow/core/example/*.proto
# and tensorflow_serving/apis/input.proto
_MESSAGES = {
    "ExampleListWithContext": [("examples", 1, _BYTES, True), ("context", 2, _BYTES, False)],
    "Example": [("features", 1, _BYTES, False)],
    "Features": [("feature", 1, _BYTES, True)],  # map<string, Feature>: repeated entries
    "FeatureEntry": [("key", 1, _STRING, False), ("value", 2, _BYTES, False)],
    "Feature": [("float_list", 2, _BYTES, False), ("int64_list", 3, _BYTES, False)],
    "FloatList": [("value", 1, _FLOAT, True)],
    "Int64List": [("value", 1, _INT64, True)],
}


@functools.lru_cache(maxsize=1)
def _descriptor_source() -> bytes:
    files = pb.FileDescriptorSet()
    proto = files.file.add(name="ranker_serving_wire.proto", package=_PACKAGE, syntax="proto3")
    for message, fields in _MESSAGES.items():
        msg = proto.message_type.add(name=message)
        for name, number, kind, repeated in fields:
            field = msg.field.add(name=name, number=number, type=kind)
            if repeated:
                field.label = _REPEATED
    return b"bytes://" + files.SerializeToString()


def _decode(serialized: tf.Tensor, message: str, dtypes: dict) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """decode_proto of a 1-D batch: (sizes [n, fields], values [n, max count] per field).

    decode_proto refuses an empty batch, so one empty message rides along and is dropped."""
    padded = tf.concat([serialized, tf.constant([b""])], axis=0)
    sizes, values = tf.io.decode_proto(padded, f"{_PACKAGE}.{message}", list(dtypes),
                                       list(dtypes.values()), descriptor_source=_descriptor_source())
    return sizes[:-1], [v[:-1] for v in values]


def _first(values: tf.Tensor) -> tf.Tensor:
    """Column 0 of `[n, max count]` (an absent singular field: the empty default)."""
    pad = tf.zeros([tf.shape(values)[0], 1], values.dtype)
    return tf.concat([values, pad], axis=1)[:, 0]


def _entries(examples: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.RaggedTensor]:
    """Every feature of every example: (example index [E], key [E], numbers [E, (values)])."""
    _, (features,) = _decode(examples, "Example", {"features": tf.string})
    sizes, (entries,) = _decode(_first(features), "Features", {"feature": tf.string})
    entries = tf.RaggedTensor.from_tensor(entries, lengths=sizes[:, 0])
    _, (keys, values) = _decode(entries.values, "FeatureEntry", {"key": tf.string, "value": tf.string})
    _, (floats, ints) = _decode(_first(values), "Feature",
                                {"float_list": tf.string, "int64_list": tf.string})
    numbers = []
    for serialized, message, dtype in ((floats, "FloatList", tf.float32), (ints, "Int64List", tf.int64)):
        sizes, (value,) = _decode(_first(serialized), message, {"value": dtype})
        ragged = tf.RaggedTensor.from_tensor(value, lengths=sizes[:, 0])
        numbers.append(tf.cast(ragged, tf.float32))
    return entries.value_rowids(), _first(keys), tf.concat(numbers, axis=1)


def _dense_numbers(feature: fs.Feature, rows, keys, numbers, count) -> tf.Tensor:
    """One numeric `[count]` or vector `[count, n]` feature from the decoded entries."""
    width = feature.length if feature.kind == fs.VECTOR else 1
    hit = tf.equal(keys, feature.name)
    values = tf.ragged.boolean_mask(numbers, hit)
    want = "1 number" if width == 1 else f"{width} numbers"
    check = tf.debugging.assert_equal(
        values.row_lengths(), tf.cast(width, tf.int64),
        message=f"feature {feature.name!r}: each example must hold {want} (int64 or float)")
    with tf.control_dependencies([check]):
        dense = tf.reshape(values.flat_values, [-1, width])
    rows = tf.boolean_mask(rows, hit)[:, None]
    out = tf.tensor_scatter_nd_update(tf.zeros([count, width], tf.float32), rows, dense)
    return out if feature.kind == fs.VECTOR else out[:, 0]


def parse_examples(examples: tf.Tensor, features) -> dict[str, tf.Tensor]:
    """A 1-D batch of serialized tf.Examples → `{name: [n]}` (vectors `[n, length]`)."""
    features = tuple(features)
    strings = {f.name: tensors.feature_parse_spec(f) for f in features if f.kind == fs.CATEGORICAL}
    # parse_example runs first even without string features: a request that is not a tf.Example
    # gets its InvalidArgument error, as before numbers were decoded separately
    gate = strings or {_GATE_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
    parsed = tf.io.parse_example(examples, gate)
    out = {name: parsed[name] for name in strings}
    numeric = [f for f in features if f.kind != fs.CATEGORICAL]
    if numeric:
        # a data dependency (a control one gets optimised away): every example + "" from the gate
        validated = tf.strings.join([examples, tf.strings.substr(next(iter(parsed.values())), 0, 0)])
        rows, keys, numbers = _entries(validated)
        count = tf.size(examples)
        for f in numeric:
            out[f.name] = _dense_numbers(f, rows, keys, numbers, count)
    return out


def parse_elwc(elwcs: tf.Tensor, spec: fs.FeatureSpec) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """A 1-D batch of serialized ELWCs → (features `[lists, candidates(, n)]`, mask).

    Context features are read from each ELWC's context, item features from its examples; lists
    are padded to the longest one (parse defaults) and the mask marks the real candidates.
    """
    sizes, (context, examples) = _decode(elwcs, "ExampleListWithContext",
                                         {"context": tf.string, "examples": tf.string})
    lengths = sizes[:, 1]
    examples = tf.RaggedTensor.from_tensor(examples, lengths=lengths)
    width = tf.cast(tf.reduce_max(tf.concat([lengths, [0]], axis=0)), tf.int32)
    lists = tf.shape(elwcs)[0]
    out = {}
    for name, value in parse_examples(examples.values, spec.item).items():
        ragged = tf.RaggedTensor.from_row_lengths(value, lengths)
        out[name] = ragged.to_tensor(shape=tf.concat([[lists, width], tf.shape(value)[1:]], axis=0))
    for name, value in parse_examples(_first(context), spec.context).items():
        value = tf.expand_dims(value, 1)
        out[name] = tf.broadcast_to(value, tf.concat([[lists, width], tf.shape(value)[2:]], axis=0))
    return out, tf.sequence_mask(lengths, width)
