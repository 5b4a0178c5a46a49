"""JSON lines of the impression log and of judged lists, built from pre-serialised per-item and
per-query fragments with f-strings (json.dumps per line is several times slower). Every string that
comes from data (ids, feature values) goes through json.dumps, so quotes and backslashes in a LETOR
qid stay valid JSON."""
from __future__ import annotations

import gzip
import json

import numpy as np

from ranker import storage
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import clicks as ck
from ranker.simulation import worlds
from ranker.simulation.sessions import BASE_TIMESTAMP, SessionBlock

GZIP_LEVEL = 1  # level 6 halves the size of feature-heavy logs but costs ~3x the time
JUDGED_PREFIX = "judged-"  # request_id of a judged list: the prefix and the query id
_COMPACT = (",", ":")


def dumps(obj) -> str:
    return json.dumps(obj, separators=_COMPACT, ensure_ascii=False)


def number(value: float):
    value = float(value)
    return int(value) if value.is_integer() else value


def _feature_fragments(values: np.ndarray) -> list[str]:
    """JSON text of each item's value of one feature."""
    if values.dtype.kind in "US":
        return [json.dumps(v, ensure_ascii=False) for v in values.tolist()]
    if values.ndim == 1:
        return [repr(number(v)) for v in values.tolist()]
    # Vectors: format each distinct value once (LETOR rows repeat few values; json.dumps per row is
    # ~5x slower), integral values as ints so sparse rows stay short (smaller files, faster gzip).
    distinct, inverse = np.unique(values, return_inverse=True)
    if not np.all(np.isfinite(distinct)):
        raise RankerError("feature vectors must be finite numbers")
    text = np.array([repr(number(v)) for v in distinct.tolist()], dtype=object)
    cells = text[inverse.reshape(values.shape)]
    return ["[" + ",".join(row) + "]" for row in cells.tolist()]


def item_fragments(qs: worlds.QuerySet) -> list[str]:
    """Per candidate: '"item_id":…,"relevance":…,"features":{…}' (the per-item part of a line)."""
    names = list(qs.item_features)
    frags = [_feature_fragments(np.asarray(qs.item_features[n])) for n in names]
    keys = [f'"{n}":' for n in names]
    out = []
    for i, (item_id, rel) in enumerate(zip(qs.item_ids, qs.relevance.tolist())):
        features = ",".join(k + f[i] for k, f in zip(keys, frags))
        out.append(f'"{fs.ITEM_ID}":{json.dumps(item_id)},"{fs.RELEVANCE}":{number(rel)!r},'
                   f'"features":{{{features}}}')
    return out


def session_lines(qs: worlds.QuerySet, block: SessionBlock, devices: list[str],
                  tails: list[str], contexts: list[str]) -> str:
    """The block's impression lines, session by session, top slot first."""
    # A session's request_id is '<qid>-<n>': the escaped qid without its closing quote, then -n".
    open_qids = {q: json.dumps(qs.query_ids[q])[:-1] for q in np.unique(block.query).tolist()}
    names = [json.dumps(d) for d in devices]
    heads = [
        f'{{"{fs.REQUEST_ID}":{open_qids[q]}-{n}","{fs.DEVICE}":{names[d]},'
        f'"{fs.TIMESTAMP}":{t},"context":{contexts[q]},'
        for q, n, d, t in zip(block.query.tolist(), block.number.tolist(), block.device.tolist(),
                              block.timestamp.tolist())
    ]
    rows, cols = np.nonzero(block.valid)
    clicked = block.clicked[rows, cols].astype(np.int8).tolist()
    items = block.shown[rows, cols].tolist()
    pos_key, click_key = f'"{fs.POSITION}":', f',"{fs.CLICKED}":'
    return "".join([
        f"{heads[s]}{pos_key}{p}{click_key}{c},{tails[i]}}}\n"
        for s, p, c, i in zip(rows.tolist(), (cols + 1).tolist(), clicked, items)
    ])


def judged_lines(qs: worlds.QuerySet, logging_quality: float) -> str:
    """Full candidate lists; position = rank under the (noise-free) logging policy, no `clicked`."""
    tails = item_fragments(qs)
    contexts = [dumps(c) for c in qs.context]
    score = ck.policy_scores(worlds.by_query_z(qs.latent, qs.offsets), qs.stale, logging_quality)
    lines = []
    for q, qid in enumerate(qs.query_ids):
        lo, hi = int(qs.offsets[q]), int(qs.offsets[q + 1])
        order = lo + np.argsort(-score[lo:hi], kind="stable")
        head = (f'{{"{fs.REQUEST_ID}":{json.dumps(JUDGED_PREFIX + qid)},"{fs.DEVICE}":"{fs.JUDGED_DEVICE}",'
                f'"{fs.TIMESTAMP}":{BASE_TIMESTAMP},"context":{contexts[q]},"{fs.POSITION}":')
        lines.extend(f"{head}{p},{tails[i]}}}\n" for p, i in enumerate(order.tolist(), 1))
    return "".join(lines)


class gzip_writer:
    """gzip with mtime=0 and a fixed header name, so equal content gives equal bytes."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self._raw = storage.open_file(self.path, "wb")
        self._gz = gzip.GzipFile(filename=storage.basename(self.path), mode="wb",
                                 fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gz

    def __exit__(self, *exc):
        self._gz.close()
        self._raw.close()
        return False
