"""One log line → the normalised impression (ranker.features.codec encodes it), or a dead letter.

Pure Python (no Beam, no TensorFlow) so the same validation runs inside the Beam job, in the
benchmark's plain loop and in tests. Line-level reasons are decided here; list-level reasons
(duplicate_position, list_too_long, mixed_labels, inconsistent_request) need the whole request
and are decided by order.py, which builds its dead letters with `dead_letter()` below.

Normalisation makes equal inputs equal records whatever the source format: categoricals become
strings (an integer id 17 becomes "17"), numbers become floats, vectors lists of floats, `clicked`
becomes 0/1 (or None on a judged line), and only features declared in the spec are kept.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from ranker.features import spec as fs

# Stable dead-letter reasons: they are keys of stats.json and of every dead-letter record.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_POSITION = "invalid_position"
NON_FINITE = "non_finite"
WRONG_VECTOR_LENGTH = "wrong_vector_length"
OUT_OF_RANGE = "out_of_range"  # a finite number float32 cannot hold (it would become inf)
DUPLICATE_POSITION = "duplicate_position"
LIST_TOO_LONG = "list_too_long"  # judged lists only: click lists are truncated instead
MIXED_LABELS = "mixed_labels"
INCONSISTENT_REQUEST = "inconsistent_request"  # device_type or context differ within a request
LINE_REASONS = (INVALID_UTF8, INVALID_JSON, MISSING_FIELD, WRONG_TYPE, INVALID_POSITION,
                NON_FINITE, WRONG_VECTOR_LENGTH, OUT_OF_RANGE)
LIST_REASONS = (DUPLICATE_POSITION, LIST_TOO_LONG, MIXED_LABELS, INCONSISTENT_REQUEST)
REASONS = LINE_REASONS + LIST_REASONS

MAX_RAW_CHARS = 2000
MAX_POSITION = 2**31 - 1  # positions are int32 ids in the bias tower
FLOAT32_MAX = 3.4028234663852886e38  # numbers are stored as float32 in the ELWC
CONTEXT_KEY = "context"
FEATURES_KEY = "features"

_isfinite = math.isfinite


class _Reject(Exception):
    """Internal: carries a reason out of the validators (cheap: raised only on bad lines)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def dead_letter(source: str, line: int, reason: str, detail: str,
                raw: bytes | str | None) -> dict:
    """The record written to DIR/dead_letter/: enough to find, read and fix the line.

    raw None: not at hand (the grouping step re-reads it from the source).
    """
    return {"source": source, "line": line, "reason": reason, "detail": detail,
            "raw": None if raw is None else raw_text(raw)}


def raw_text(raw: bytes | str) -> str:
    """A log line as dead-letter text: undecodable bytes replaced, at most MAX_RAW_CHARS."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, (bytes, bytearray)) else raw
    return text[:MAX_RAW_CHARS]


def parse_line(raw: bytes, spec: fs.FeatureSpec, source: str,
               line_number: int) -> tuple[dict | None, dict | None]:
    """(impression, None) for a valid line, (None, dead_letter) otherwise; never raises."""
    try:
        return _impression(raw, _compiled(spec)), None
    except _Reject as err:
        return None, dead_letter(source, line_number, err.reason, err.detail, raw)


def is_judged(impression: dict) -> bool:
    """A judged line carries a graded relevance and no click (expert-annotated lists)."""
    return impression[fs.CLICKED] is None


# --- compiled spec -------------------------------------------------------------------------------

_CACHE: list = [None, None]  # (spec, compiled): the job uses one spec, so one slot is enough


def _compiled(spec: fs.FeatureSpec) -> tuple[tuple, tuple]:
    """(context, item) tuples of (name, kind, length), computed once per spec object."""
    if _CACHE[0] is not spec:
        _CACHE[1] = (tuple((f.name, f.kind, f.length) for f in spec.context),
                     tuple((f.name, f.kind, f.length) for f in spec.item))
        _CACHE[0] = spec
    return _CACHE[1]


# --- validators ----------------------------------------------------------------------------------
# The common case (a valid line) takes inline type checks; helpers run to explain a rejection.

_DECODER = json.JSONDecoder()
_scan_once = _DECODER.scan_once  # the C scanner: json.loads minus its per-call wrapping
_NUMBER_TYPES = frozenset({int, float})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _impression(raw: bytes | str, compiled: tuple[tuple, tuple]) -> dict:
    obj = _decode(raw)
    get = obj.get
    request_id = get(fs.REQUEST_ID)
    if type(request_id) is not str or not request_id:
        _reject_string(request_id, fs.REQUEST_ID)
    position = get(fs.POSITION)
    if type(position) is not int or position < 1 or position > MAX_POSITION:
        _reject_position(position)
    device = get(fs.DEVICE)
    if type(device) is not str:
        _reject_string(device, fs.DEVICE)
    item_id = get(fs.ITEM_ID)
    if type(item_id) is not str or not item_id:
        _reject_string(item_id, fs.ITEM_ID)
    clicked = get(fs.CLICKED)
    relevance = get(fs.RELEVANCE)
    if relevance is not None:
        relevance = _number(relevance, fs.RELEVANCE)
    if clicked is True or clicked is False:
        clicked = int(clicked)
    elif not (type(clicked) is int and (clicked == 0 or clicked == 1)):
        if clicked is not None or relevance is None:
            _reject_clicked(clicked)
    timestamp = get(fs.TIMESTAMP)
    if timestamp is not None and type(timestamp) is not int:
        _check_finite(timestamp, fs.TIMESTAMP)
        raise _Reject(WRONG_TYPE,
                      f"timestamp must be an integer (unix seconds), got {_show(timestamp)}")
    context_spec, item_spec = compiled
    return {
        fs.REQUEST_ID: request_id,
        fs.POSITION: position,
        fs.DEVICE: device,
        fs.ITEM_ID: item_id,
        fs.CLICKED: clicked,
        fs.RELEVANCE: relevance,
        fs.TIMESTAMP: timestamp,
        CONTEXT_KEY: _features(get(CONTEXT_KEY), context_spec, CONTEXT_KEY),
        FEATURES_KEY: _features(get(FEATURES_KEY), item_spec, FEATURES_KEY),
    }


def _decode(raw: bytes | str) -> dict:
    if isinstance(raw, (bytes, bytearray)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _Reject(INVALID_UTF8, f"not UTF-8: {err.reason} at byte {err.start}") from None
    else:
        text = raw
    try:
        obj, end = _scan_once(text, 0)
        if end != len(text) and not text[end:].isspace():
            raise ValueError("extra data after the JSON value")
    except (StopIteration, ValueError, RecursionError):
        obj = _loads_or_reject(text)  # leading blanks, or an error to explain
    if type(obj) is not dict:
        raise _Reject(INVALID_JSON, f"not a JSON object but {_type_name(obj)}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
        raise _Reject(INVALID_UTF8, "a \\u escape encodes a lone surrogate, not a character")
    return obj


def _loads_or_reject(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _Reject(INVALID_JSON, _short(err)) from None


def _has_lone_surrogate(obj: dict) -> bool:
    """Escapes like \\ud800 decode to strings that cannot be written as UTF-8 (protobuf fails)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_string(value: Any, key: str):
    if value is None:
        raise _Reject(MISSING_FIELD, key)
    raise _Reject(WRONG_TYPE, f"{key} must be a non-empty string, got {_show(value)}")


def _reject_position(value: Any):
    if value is None:
        raise _Reject(MISSING_FIELD, fs.POSITION)
    _check_finite(value, fs.POSITION)
    raise _Reject(INVALID_POSITION,
                  f"position must be an integer in 1..{MAX_POSITION}, got {_show(value)}")


def _reject_clicked(value: Any):
    if value is None:
        raise _Reject(MISSING_FIELD, fs.CLICKED)
    _check_finite(value, fs.CLICKED)
    raise _Reject(WRONG_TYPE, f"clicked must be 0, 1 or a bool, got {_show(value)}")


def _features(values: Any, declared: tuple, where: str) -> dict:
    """Declared features only; undeclared keys are ignored, null means absent (parse default)."""
    if values is None:
        return {}
    if type(values) is not dict:
        raise _Reject(WRONG_TYPE, f"{where} must be an object, got {_type_name(values)}")
    out = {}
    get = values.get
    for name, kind, length in declared:
        value = get(name)
        if value is None:
            continue
        kind_of_value = type(value)
        if kind == fs.CATEGORICAL:
            out[name] = value if kind_of_value is str else _categorical(value, where, name)
        elif kind == fs.NUMERIC:
            if kind_of_value is float and -FLOAT32_MAX <= value <= FLOAT32_MAX:
                out[name] = value
            elif kind_of_value is int and -FLOAT32_MAX <= value <= FLOAT32_MAX:
                out[name] = float(value)
            else:
                out[name] = _number(value, f"{where}.{name}")
        else:
            out[name] = _vector(value, length, where, name)
    return out


def _categorical(value: Any, where: str, name: str) -> str:
    if type(value) is int:
        return str(value)
    label = f"{where}.{name}"
    _check_finite(value, label)
    raise _Reject(WRONG_TYPE, f"{label} must be a string or an integer, got {_show(value)}")


def _number(value: Any, label: str) -> float:
    kind = type(value)
    if kind is float and not _isfinite(value):
        raise _Reject(NON_FINITE, f"{label} is {value}")
    if kind is float or kind is int:
        if -FLOAT32_MAX <= value <= FLOAT32_MAX:
            return float(value)
        raise _Reject(OUT_OF_RANGE, f"{label} is {_show(value)}, beyond float32 (±3.4e38)")
    raise _Reject(WRONG_TYPE, f"{label} must be a number, got {_show(value)}")


def _vector(value: Any, length: int, where: str, name: str) -> list[float]:
    if type(value) is list and len(value) == length:
        types = set(map(type, value))
        if types <= _NUMBER_TYPES and _within_float32(value):
            return value if float in types and len(types) == 1 else [float(v) for v in value]
    label = f"{where}.{name}"
    if type(value) is not list:
        raise _Reject(WRONG_TYPE, f"{label} must be a list of {length} numbers, got {_show(value)}")
    if len(value) != length:
        raise _Reject(WRONG_VECTOR_LENGTH,
                      f"{label} has {len(value)} values, the spec says {length}")
    return [_number(v, label) for v in value]  # raises with the first bad value


def _within_float32(values: list) -> bool:
    """Every number finite and representable as float32 (NaN fails both comparisons)."""
    if not values:
        return True
    try:
        return all(map(_isfinite, values)) and max(map(abs, values)) <= FLOAT32_MAX
    except OverflowError:  # an integer too large for a float
        return False


def _check_finite(value: Any, label: str) -> None:
    if type(value) is float and not _isfinite(value):
        raise _Reject(NON_FINITE, f"{label} is {value}")


# --- messages ------------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a bool", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else _type_name(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 200 else text[:197] + "..."
