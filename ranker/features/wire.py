"""A pure-Python protobuf wire encoder for the Beam job's ExampleListWithContext (no TensorFlow).

`encode_elwc(impressions, spec)` returns exactly `codec.build_elwc(impressions, spec)
.SerializeToString(deterministic=True)`, ~3-4× faster and without importing tensorflow (Beam workers
need not load it). build_elwc stays the reference for the protos' content; tests/test_wire.py proves
the byte identity against the real (upb) protobuf on random, edge-value and simulated lists.

Wire format: ELWC {repeated Example examples = 1; Example context = 2}, Example {Features = 1},
Features {map<string, Feature> feature = 1} (entry {key = 1; value = 2}), Feature oneof {BytesList = 1;
FloatList = 2; Int64List = 3}, each list {repeated value = 1}, floats and int64s packed. Deterministic
output: fields by number (examples first), map entries in upb's order: bytewise by UTF-8 key, but a key
AFTER its extensions ("pos" before "p": upb breaks prefix ties by size, then emits in reverse). Negative
int64s are 10-byte varints, floats beyond float32 ±inf; empty vectors write an empty float_list.
"""
from __future__ import annotations

import math
import operator
import struct
from typing import Sequence

from ranker.features import spec as fs

_BYTES, _FLOAT, _VECTOR, _INT64 = 0, 1, 2, 3
_KINDS = {fs.CATEGORICAL: _BYTES, fs.NUMERIC: _FLOAT, fs.VECTOR: _VECTOR}
_NESTED, _OPTIONAL, _REQUIRED = 0, 1, 2  # where a value comes from: features/context, or top level
_SMALL = [bytes((i,)) for i in range(128)]
_pack_f = struct.Struct("<f").pack
_by_position = operator.itemgetter(fs.POSITION)
_FAST = 256  # strings shorter than this and int64s in [0, _FAST) take precomputed entry bytes


def _varint(n: int) -> bytes:
    """Base-128 varint of an int64 (two's complement, 10 bytes when negative), as upb writes it."""
    if 0 <= n < 128:
        return _SMALL[n]
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError(f"Value out of range: {n}")
    n, out = n & ((1 << 64) - 1), bytearray()
    while n > 127:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + _SMALL[n]


def _float32(value) -> bytes:
    """float(value) as little-endian float32; upb rounds out-of-range doubles to ±inf."""
    value = float(value)
    try:
        return _pack_f(value)
    except OverflowError:
        return _pack_f(math.copysign(math.inf, value))


def _field(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _entry(key: bytes, feature: bytes) -> bytes:
    """One Features map entry: the key field (precomputed) and the Feature value field."""
    return _field(b"\n", key + _field(b"\x12", feature))


_FEATURE = {_BYTES: lambda data: _field(b"\n", _field(b"\n", data)),  # a Feature around its payload
            _FLOAT: lambda packed: _field(b"\x12", _field(b"\n", packed) if packed else b""),
            _INT64: lambda varint: _field(b"\x1a", _field(b"\n", varint))}  # packed fields: one length


def _head(key: bytes, kind: int, size: int) -> bytes:
    """An entry's bytes before a payload of `size` bytes (what the fast paths precompute)."""
    entry = _entry(key, _FEATURE[kind](bytes(size)))
    return entry[:len(entry) - size]


class ElwcEncoder:
    """Per spec: upb's field order and fast-path bytes (made by the generic functions above): entry
    heads for strings under _FAST bytes, floats, declared-length vectors; int64 entries < _FAST."""

    def __init__(self, spec: fs.FeatureSpec):
        context = [(fs.REQUEST_ID, _BYTES, _REQUIRED, 1), (fs.DEVICE, _BYTES, _REQUIRED, 1)]
        item = [(fs.ITEM_ID, _BYTES, _REQUIRED, 1), (fs.POSITION, _INT64, _REQUIRED, 1),
                (fs.CLICKED, _INT64, _OPTIONAL, 1), (fs.RELEVANCE, _FLOAT, _OPTIONAL, 1)]
        context += [(f.name, _KINDS[f.kind], _NESTED, f.length) for f in spec.context]
        item += [(f.name, _KINDS[f.kind], _NESTED, f.length) for f in spec.item]
        self._context, self._item = self._slots(context), self._slots(item)

    @staticmethod
    def _slots(fields: list) -> tuple:
        """(name, kind, source, key field, fast bytes, vector Struct) in upb's map order."""
        out = []
        for name, kind, source, length in fields:
            key, vector = _field(b"\n", name.encode("utf-8")), None
            if kind == _BYTES:
                fast = tuple(_head(key, _BYTES, n) for n in range(_FAST))
            elif kind == _INT64:
                fast = {v: _entry(key, _FEATURE[_INT64](_varint(v))) for v in range(_FAST)}
            elif kind == _FLOAT:
                fast = _head(key, _FLOAT, 4)
            else:
                fast, vector = _head(key, _FLOAT, 4 * length), struct.Struct(f"<{length}f")
            out.append((name.encode("utf-8") + b"\xff",  # never in UTF-8: "pos" before "p"
                        (name, kind, source, key, fast, vector)))
        return tuple(slot for _, slot in sorted(out, key=lambda pair: pair[0]))

    def encode(self, impressions: Sequence[dict]) -> bytes:
        """The serialized ELWC of one served list: examples by position, context from the first."""
        ordered = sorted(impressions, key=_by_position)
        out = bytearray()
        for impression in ordered:
            out += _field(b"\n", _field(b"\n", self._features(self._item, impression, "features")))
        out += _field(b"\x12", _field(b"\n", self._features(self._context, ordered[0], "context")))
        return bytes(out)

    @staticmethod
    def _features(slots: tuple, impression: dict, nested_key: str) -> bytearray:
        """The Features map entries of one Example, in key order."""
        nested = impression.get(nested_key) or {}
        out = bytearray()
        for name, kind, source, key, fast, vector in slots:
            if source == _REQUIRED:
                value = impression[name]
            else:
                value = (nested if source == _NESTED else impression).get(name)
                if value is None:
                    continue
            if kind == _BYTES:
                data = (value if isinstance(value, str) else str(value)).encode("utf-8")
                out += fast[len(data)] + data if len(data) < _FAST else _entry(key, _FEATURE[_BYTES](data))
            elif kind == _FLOAT:
                out += fast + _float32(value)
            elif kind == _INT64:
                entry = fast.get(value)  # 1.0 and True hit 1's entry, as int() would
                out += _entry(key, _FEATURE[_INT64](_varint(int(value)))) if entry is None else entry
            else:
                try:
                    out += fast + vector.pack(*value)
                except (OverflowError, struct.error, TypeError):  # wrong length, inf, "1.5"
                    out += _entry(key, _FEATURE[_FLOAT](b"".join([_float32(v) for v in value])))
        return out


_CACHE: dict[int, tuple] = {}  # id(spec) → (spec, encoder); specs kept alive, so ids stay theirs


def encode_elwc(impressions: Sequence[dict], spec: fs.FeatureSpec) -> bytes:
    """`build_elwc(impressions, spec).SerializeToString(deterministic=True)`, without TensorFlow.

    One encoder per spec object (a Beam worker may hold a few copies of the spec: one per DoFn)."""
    cached = _CACHE.get(id(spec))
    if cached is None:
        if len(_CACHE) >= 16:
            _CACHE.clear()
        cached = _CACHE[id(spec)] = (spec, ElwcEncoder(spec))
    return cached[1].encode(impressions)
