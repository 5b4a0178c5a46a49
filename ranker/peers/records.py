"""Raw ELWC records of a `preprocess` split, decoded in Python: the ids the parse spec leaves out.

The model's parse spec (ranker.features.tensors) carries neither `request_id` nor `item_id` nor an
undeclared `query_id`; peers and click models need them. Records are read in the order of
`ranker.models.data.dataset` (same files, same interleave), so per-list arrays built here align
with every reader of the split that goes through it.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import input_pb2

from ranker.artifacts import TRAIN
from ranker.features import spec as fs
from ranker.models import data

QUERY_ID = "query_id"  # the context feature a click model keys queries on, when the logs carry it
PARALLEL_READS = 4  # data.dataset's interleave of shard files (num_parallel_reads=min(files, 4))
READ_BATCH = 1024


@dataclasses.dataclass(frozen=True)
class RawList:
    """One served (or judged) list: ids and labels in displayed order."""

    request_id: str
    query: str
    device: str
    item_ids: list[str]
    positions: np.ndarray  # int, 1 = top
    clicked: np.ndarray  # int 0/1; -1 where the list carries no click label (judged)
    relevance: np.ndarray  # float; -1 where absent


def serialized_batches(data_dir: str, split: str,
                       batch_size: int = READ_BATCH) -> Iterator[np.ndarray]:
    """Serialized ELWCs of a split in data.dataset's order, `batch_size` at a time (iterating
    tf.data record by record is about ten times slower)."""
    files = data.required_split_files(data_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP",
                                 num_parallel_reads=min(len(files), PARALLEL_READS))
    yield from ds.batch(batch_size).as_numpy_iterator()


def serialized(data_dir: str, split: str) -> Iterator[bytes]:
    """Serialized ELWCs of a split one by one, in data.dataset's order."""
    for batch in serialized_batches(data_dir, split):
        yield from batch


def request_id(record: bytes) -> str:
    """The `request_id` of a serialized ELWC."""
    context = input_pb2.ExampleListWithContext.FromString(record).context.features.feature
    return _text(context, fs.REQUEST_ID) or ""


def _text(fmap, name: str) -> str | None:
    if name not in fmap:
        return None
    feature = fmap[name]
    if feature.bytes_list.value:
        return feature.bytes_list.value[0].decode("utf-8")
    values = feature.float_list.value or feature.int64_list.value
    return ",".join(f"{v:g}" for v in values)


def _scalar(fmap, name: str, default: float) -> float:
    if name not in fmap:
        return default
    feature = fmap[name]
    values = feature.int64_list.value or feature.float_list.value
    return float(values[0]) if values else default


def query_key_source(spec: fs.FeatureSpec, data_dir: str, split: str = TRAIN) -> list[str]:
    """Context features that name a query: `query_id` when the records carry it, else every
    declared context feature (their joined values then stand for the query)."""
    for record in serialized(data_dir, split):
        context = input_pb2.ExampleListWithContext.FromString(record).context.features.feature
        if QUERY_ID in context:
            return [QUERY_ID]
        break
    return fs.names(spec.context)


def raw_lists(data_dir: str, split: str, query_features: list[str]) -> Iterator[RawList]:
    """Every list of a split, in data.dataset's order; `query` joins `query_features`' values."""
    for record in serialized(data_dir, split):
        elwc = input_pb2.ExampleListWithContext.FromString(record)
        context = elwc.context.features.feature
        query = "|".join(_text(context, name) or "" for name in query_features)
        examples = [e.features.feature for e in elwc.examples]
        yield RawList(
            request_id=_text(context, fs.REQUEST_ID) or "",
            query=query,
            device=_text(context, fs.DEVICE) or "",
            item_ids=[_text(e, fs.ITEM_ID) or "" for e in examples],
            positions=np.array([_scalar(e, fs.POSITION, fs.PADDING_POSITION) for e in examples],
                               dtype=np.int64),
            clicked=np.array([_scalar(e, fs.CLICKED, int(fs.PADDING_LABEL)) for e in examples], dtype=np.int64),
            relevance=np.array([_scalar(e, fs.RELEVANCE, fs.PADDING_LABEL) for e in examples]),
        )
