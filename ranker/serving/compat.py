"""Is a folder an export of this project, for data of this feature spec? One-line errors, no load.

Reads the SignatureDefs from `saved_model.pb` (no graph is loaded) and compares the `score_lists`
inputs with the tensors the data's feature spec defines. `ranker validate` calls it before any
evaluation; `evaluate --saved-model` can call it the same way.
"""
from __future__ import annotations

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from ranker import storage
from ranker.artifacts import saved_model_file
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.features import tensors
from ranker.serving.signatures import RAW_SIGNATURE


def signature_inputs(saved_model_dir: str, signature: str) -> dict[str, tuple[str, list[int]]]:
    """{input name: (dtype name, shape with -1 for unknown)} of one signature of the SavedModel."""
    path = saved_model_file(saved_model_dir)
    try:
        saved = saved_model_pb2.SavedModel.FromString(storage.read_bytes(path))
    except (OSError, DecodeError) as err:
        raise RankerError(f"{path}: not a readable SavedModel ({str(err)[:120]})") from None
    defs = saved.meta_graphs[0].signature_def if saved.meta_graphs else {}
    if signature not in defs:
        raise RankerError(f"{saved_model_dir}: not a `ranker export` SavedModel (no {signature!r}"
                          f" signature; it has {sorted(defs)})")
    return {name: (tf.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim])
            for name, info in defs[signature].inputs.items()}


def check_saved_model(saved_model_dir: str, spec: fs.FeatureSpec) -> None:
    """RankerError (one line) unless the SavedModel's `score_lists` takes exactly the spec's features."""
    got = signature_inputs(saved_model_dir, RAW_SIGNATURE)
    want = {}
    for f in spec.features:
        spec_tensor = tensors.tensor_spec(f, 2)
        want[f.name] = (spec_tensor.dtype.name, [-1 if d is None else d for d in spec_tensor.shape.as_list()])
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise RankerError(f"{saved_model_dir} was exported for another feature spec than the data's:"
                          f" the model lacks {missing}, the data lacks {extra}")
    for name, (dtype, shape) in want.items():
        if got[name] != (dtype, shape):
            raise RankerError(f"{saved_model_dir}: feature {name!r} is {got[name][0]} {got[name][1]} in the"
                              f" model but {dtype} {shape} in the data's feature spec")
