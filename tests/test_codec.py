"""ranker.features.codec: impressions and requests → protos, and protos back to raw values."""
from __future__ import annotations

import numpy as np
import pytest

from ranker.errors import RankerError
from ranker.features import codec
from ranker.features import spec as fs

SPEC = fs.parse_spec({
    "max_list_size": 4,
    "context": [{"name": "segment", "kind": "categorical"}],
    "item": [{"name": "category", "kind": "categorical"}, {"name": "price", "kind": "numeric"},
             {"name": "embedding", "kind": "vector", "length": 2}],
}, source="test")


def _impression(position: int, **extra) -> dict:
    return {fs.REQUEST_ID: "r1", fs.DEVICE: "mobile", fs.ITEM_ID: f"i{position}", fs.POSITION: position,
            fs.CLICKED: position % 2, fs.RELEVANCE: None, "context": {"segment": "s"},
            "features": {"category": f"c{position}", "price": float(position), **extra}}


def test_build_elwc_orders_by_position_and_keeps_labels_and_context():
    elwc = codec.build_elwc([_impression(2), _impression(1, embedding=[0.5, 1.5])], SPEC)
    context = elwc.context.features.feature
    assert context[fs.REQUEST_ID].bytes_list.value == [b"r1"]
    assert context[fs.DEVICE].bytes_list.value == [b"mobile"]
    assert codec.decode_features(SPEC.context, context) == {"segment": "s"}
    items = [e.features.feature for e in elwc.examples]
    assert [list(e[fs.POSITION].int64_list.value) for e in items] == [[1], [2]]
    assert [list(e[fs.CLICKED].int64_list.value) for e in items] == [[1], [0]]
    assert all(fs.RELEVANCE not in e for e in items)  # absent labels stay absent (parse default)
    assert codec.decode_features(SPEC.item, items[0]) == {"category": "c1", "price": 1.0,
                                                          "embedding": [0.5, 1.5]}
    assert codec.decode_features(SPEC.item, items[1]) == {"category": "c2", "price": 2.0}


def test_serving_example_decodes_to_the_request_it_encodes():
    candidate = {"category": "x", "price": 3, "embedding": [1, 2], fs.ITEM_ID: "ignored"}
    example = codec.serving_example(candidate, {"segment": "s"}, SPEC)
    fmap = example.features.feature
    assert set(fmap) == {"category", "price", "embedding", "segment"}
    assert codec.decode_features(SPEC.features, fmap) == {"category": "x", "price": 3.0,
                                                          "embedding": [1.0, 2.0], "segment": "s"}


def test_raw_arrays_fill_missing_features_with_the_parse_defaults():
    arrays = codec.raw_arrays([{"category": "x"}, {"price": 2.0, "embedding": None}], {}, SPEC)
    assert arrays["category"].tolist() == [[b"x", b""]] and arrays["segment"].tolist() == [[b"", b""]]
    np.testing.assert_array_equal(arrays["price"], [[0.0, 2.0]])
    assert arrays["embedding"].shape == (1, 2, 2) and not arrays["embedding"].any()
    assert [codec.default_value(f) for f in SPEC.item] == ["", 0.0, [0.0, 0.0]]


def test_requests_with_undeclared_features_or_short_vectors_are_refused():
    with pytest.raises(RankerError, match=r"candidate 0: \['colour'\] are not item features"):
        codec.serialized_examples([{"colour": "red"}], {}, SPEC)
    with pytest.raises(RankerError, match="'embedding' needs 2 numbers, got 1"):
        codec.request_elwc([{"embedding": [1.0]}], {}, SPEC)
