"""The single feature spec: what the Beam job writes, what the model reads and what serving parses.

A spec is JSON (docs/schema.md, "Feature spec"): context features describe a request, item features a
shown candidate. Everything that touches features derives from it: ELWC parse specs, model input
metadata and the serving parse spec. Reserved log fields (position, device, labels) live here too so
no module spells them on its own.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

from ranker import storage
from ranker.artifacts import SPEC_FILENAME, VOCAB_DIR  # noqa: F401  (re-exported: fs.SPEC_FILENAME)
from ranker.errors import RankerError

# Reserved log fields: never declared as features in a spec.
REQUEST_ID = "request_id"
POSITION = "position"
DEVICE = "device_type"
ITEM_ID = "item_id"
CLICKED = "clicked"
RELEVANCE = "relevance"
TIMESTAMP = "timestamp"
RESERVED = frozenset({REQUEST_ID, POSITION, DEVICE, ITEM_ID, CLICKED, RELEVANCE, TIMESTAMP})
JUDGED_DEVICE = "unknown"  # the device_type of judged lines: a placeholder, never a real device

# Padding conventions of the parsed ELWC tensors (TF-Ranking's: padded labels are negative).
PADDING_LABEL = -1.0
PADDING_POSITION = 0
MASK = "example_list_mask"

CATEGORICAL, NUMERIC, VECTOR = "categorical", "numeric", "vector"
KINDS = (CATEGORICAL, NUMERIC, VECTOR)
CONTEXT, ITEM = "context", "item"

DEFAULT_MAX_LIST_SIZE = 50


class SpecError(RankerError):
    """A feature spec that cannot be used; the message names the file and the offending field."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One declared feature.

    Categoricals use either `hash_buckets` or a vocabulary written by preprocess (`vocabulary_file`,
    relative to the spec's folder); `vocabulary_size` caps how many of the most frequent values the
    vocabulary keeps (and, once resolved, is its actual size).
    """

    name: str
    kind: str
    scope: str
    length: int = 1
    hash_buckets: int | None = None
    vocabulary_size: int | None = None
    vocabulary_file: str | None = None

    @property
    def uses_vocabulary(self) -> bool:
        return self.kind == CATEGORICAL and not self.hash_buckets

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == VECTOR:
            out["length"] = self.length
        for key in ("hash_buckets", "vocabulary_size", "vocabulary_file"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclasses.dataclass(frozen=True)
class Cross:
    """A hashed cross of categorical features (context and/or item), e.g. query id × doc id: the
    model joins the components' raw strings and hashes the result into its own field."""

    name: str
    features: tuple[str, ...]
    hash_buckets: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features), "hash_buckets": self.hash_buckets}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Context and item features plus list-level settings shared by every stage."""

    context: tuple[Feature, ...] = ()
    item: tuple[Feature, ...] = ()
    max_list_size: int = DEFAULT_MAX_LIST_SIZE
    device_vocabulary_file: str | None = None
    base_dir: str = ""  # folder the relative vocabulary paths are read from
    crosses: tuple[Cross, ...] = ()  # model-side only: not in `features`, never written to ELWC

    @property
    def features(self) -> tuple[Feature, ...]:
        return self.context + self.item

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def vocabulary_path(self, feature: Feature | str) -> str:
        """Absolute path of a categorical's vocabulary (or the device vocabulary for DEVICE)."""
        if feature == DEVICE:
            rel = self.device_vocabulary_file or os.path.join(VOCAB_DIR, f"{DEVICE}.txt")
        else:
            rel = feature.vocabulary_file or os.path.join(VOCAB_DIR, f"{feature.name}.txt")
        return rel if os.path.isabs(rel) or storage.is_url(rel) else os.path.join(self.base_dir, rel)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_list_size": self.max_list_size,
            "context": [f.to_json() for f in self.context],
            "item": [f.to_json() for f in self.item],
        }
        if self.device_vocabulary_file:
            out["device_vocabulary_file"] = self.device_vocabulary_file
        if self.crosses:
            out["crosses"] = [c.to_json() for c in self.crosses]
        return out

    def save(self, path: str) -> None:
        with storage.open_file(path, "w") as fh:
            json.dump(self.to_json(), fh, indent=2)
            fh.write("\n")

    def resolved(self, vocab_sizes: dict[str, int], vocab_dir: str = VOCAB_DIR) -> "FeatureSpec":
        """The spec preprocess writes: every vocabulary categorical points at its file and size."""

        def resolve(f: Feature) -> Feature:
            if not f.uses_vocabulary:
                return f
            return dataclasses.replace(
                f,
                vocabulary_file=os.path.join(vocab_dir, f"{f.name}.txt"),
                vocabulary_size=vocab_sizes.get(f.name, 0),
            )

        return dataclasses.replace(
            self,
            context=tuple(resolve(f) for f in self.context),
            item=tuple(resolve(f) for f in self.item),
            device_vocabulary_file=os.path.join(vocab_dir, f"{DEVICE}.txt"),
        )


def parse_spec(obj: Any, source: str = "<spec>", base_dir: str = "") -> FeatureSpec:
    """Validates a decoded JSON spec; raises SpecError with a one-line reason."""
    if not isinstance(obj, dict):
        raise SpecError(f"{source}: a feature spec is a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"context", "item", "max_list_size", "device_vocabulary_file", "crosses"}
    if unknown:
        raise SpecError(f"{source}: unknown top-level keys {sorted(unknown)}")
    max_list_size = obj.get("max_list_size", DEFAULT_MAX_LIST_SIZE)
    if not _is_int(max_list_size) or max_list_size < 1:
        raise SpecError(f"{source}: max_list_size must be a positive integer, got {max_list_size!r}")
    seen: set[str] = set()
    scopes = {}
    for scope in (CONTEXT, ITEM):
        entries = obj.get(scope, [])
        if not isinstance(entries, list):
            raise SpecError(f"{source}: '{scope}' must be a list of features")
        scopes[scope] = tuple(_parse_feature(e, scope, source, seen) for e in entries)
    device_vocab = obj.get("device_vocabulary_file")
    if device_vocab is not None and not isinstance(device_vocab, str):
        raise SpecError(f"{source}: device_vocabulary_file must be a string")
    categoricals = {f.name for f in scopes[CONTEXT] + scopes[ITEM] if f.kind == CATEGORICAL}
    crosses = obj.get("crosses", [])
    if not isinstance(crosses, list):
        raise SpecError(f"{source}: 'crosses' must be a list of crosses")
    return FeatureSpec(
        context=scopes[CONTEXT],
        item=scopes[ITEM],
        max_list_size=max_list_size,
        device_vocabulary_file=device_vocab,
        base_dir=base_dir,
        crosses=tuple(_parse_cross(e, categoricals, source, seen) for e in crosses),
    )


def load_spec(path: str, read_bytes=None, exists=None, base_dir: str | None = None) -> FeatureSpec:
    """Reads and validates a spec file; vocabulary paths resolve relative to its folder. The file
    is read with `read_bytes`/`exists` (default: ranker.storage; preprocess passes Beam's)."""
    read_bytes, exists = read_bytes or storage.read_bytes, exists or storage.exists
    if not exists(path):
        raise SpecError(f"{path}: feature spec not found")
    try:
        obj = json.loads(read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError(f"{path}: not valid JSON ({err})") from None
    return parse_spec(obj, source=path, base_dir=base_dir or storage.parent(storage.absolute(path)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int_or_none(entry: dict, key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is not None and (not _is_int(value) or value < 1):
        raise SpecError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _new_name(name: Any, where: str, seen: set[str]) -> None:
    """A valid, unreserved name not declared before (features and crosses share one namespace)."""
    if not isinstance(name, str) or not name or not name.replace("_", "a").isalnum():
        raise SpecError(f"{where}: name must be a non-empty identifier")
    if name in RESERVED or name == MASK:
        raise SpecError(f"{where}: '{name}' is a reserved log field, not a feature")
    if name in seen:
        raise SpecError(f"{where}: declared twice")
    seen.add(name)


def _parse_cross(entry: Any, categoricals: set[str], source: str, seen: set[str]) -> Cross:
    if not isinstance(entry, dict):
        raise SpecError(f"{source}: each cross is an object, got {entry!r}")
    where = f"{source}: cross {entry.get('name')!r}"
    _new_name(entry.get("name"), where, seen)
    unknown = set(entry) - {"name", "features", "hash_buckets"}
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}")
    components = entry.get("features")
    if (not isinstance(components, list) or len(components) < 2
            or not all(isinstance(c, str) for c in components) or len(set(components)) < len(components)):
        raise SpecError(f"{where}: features must list two or more distinct feature names")
    for component in components:
        if component not in categoricals:
            raise SpecError(f"{where}: {component!r} is not a declared categorical feature")
    hash_buckets = _positive_int_or_none(entry, "hash_buckets", where)
    if hash_buckets is None:
        raise SpecError(f"{where}: hash_buckets must be a positive integer, got None")
    return Cross(name=entry["name"], features=tuple(components), hash_buckets=hash_buckets)


def _parse_feature(entry: Any, scope: str, source: str, seen: set[str]) -> Feature:
    if not isinstance(entry, dict):
        raise SpecError(f"{source}: each {scope} feature is an object, got {entry!r}")
    name = entry.get("name")
    where = f"{source}: {scope} feature {name!r}"
    _new_name(name, where, seen)
    allowed = {"name", "kind", "length", "hash_buckets", "vocabulary_size", "vocabulary_file"}
    unknown = set(entry) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise SpecError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    length = entry.get("length", 1 if kind != VECTOR else None)
    if kind == VECTOR and (not _is_int(length) or length < 1):
        raise SpecError(f"{where}: a vector needs a positive integer length, got {length!r}")
    if kind != VECTOR and "length" in entry:
        raise SpecError(f"{where}: only vector features have a length")
    hash_buckets = _positive_int_or_none(entry, "hash_buckets", where)
    vocabulary_size = entry.get("vocabulary_size")
    if vocabulary_size is not None and (not _is_int(vocabulary_size) or vocabulary_size < 0):
        raise SpecError(f"{where}: vocabulary_size must be a non-negative integer")
    if kind != CATEGORICAL and (hash_buckets or vocabulary_size is not None
                                or entry.get("vocabulary_file")):
        raise SpecError(f"{where}: only categorical features take hash_buckets or a vocabulary")
    if hash_buckets and (vocabulary_size is not None or entry.get("vocabulary_file")):
        raise SpecError(f"{where}: choose hash_buckets or a vocabulary, not both")
    return Feature(
        name=name,
        kind=kind,
        scope=scope,
        length=length if kind == VECTOR else 1,
        hash_buckets=hash_buckets,
        vocabulary_size=vocabulary_size,
        vocabulary_file=entry.get("vocabulary_file"),
    )


def read_vocabulary(path: str) -> list[str]:
    """One value a line, most frequent first (as preprocess writes it)."""
    with storage.open_file(path, "r") as fh:
        return [line.rstrip("\n") for line in fh if line.rstrip("\n")]


def names(features: Iterable[Feature]) -> list[str]:
    return [f.name for f in features]
