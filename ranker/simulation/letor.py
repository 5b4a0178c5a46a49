"""Readers for the two layouts public learning-to-rank sets ship in, so the simulator takes either.

* qid layout (LETOR 4.0, MSLR-WEB, Istella): ``2 qid:10 1:0.03 2:0.5 ... # docid = GX...`` — every
  line names its query; lines of one query are normally adjacent, but are grouped by qid anyway.
* group-file layout (LightGBM / the Yahoo sample): ``label idx:val ...`` with no qid; the file
  ``<data>.query`` beside it holds one integer per line, the number of docs of each query in file
  order.

``read_letor`` detects the layout from the first data line (a file that mixes the two is rejected).
Anything after ``#`` is a comment. Features stay sparse until the caller knows the vector width
across all files it reads (``LetorFile.dense``): the width is the highest feature index seen.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ranker import storage
from ranker.errors import RankerError

GROUP_SUFFIXES = (".query", ".group")  # LightGBM's name first; ".group" is its older alias


@dataclasses.dataclass(frozen=True)
class LetorFile:
    """One SVMlight file, docs grouped by query (query q owns rows offsets[q]:offsets[q+1])."""

    path: str
    query_ids: list[str]
    offsets: np.ndarray  # int64 [num_queries + 1]
    labels: np.ndarray  # float64 [num_docs]
    doc_rows: np.ndarray  # int64 [nnz]: row of each sparse entry (after grouping)
    feature_index: np.ndarray  # int64 [nnz]: feature index as written in the file
    values: np.ndarray  # float64 [nnz]
    has_qid: bool
    group_file: str | None = None

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    @property
    def num_docs(self) -> int:
        return int(self.labels.shape[0])

    @property
    def max_index(self) -> int:
        return int(self.feature_index.max()) if self.feature_index.size else 0

    @property
    def min_index(self) -> int:
        return int(self.feature_index.min()) if self.feature_index.size else 1

    def dense(self, width: int, zero_based: bool = False) -> np.ndarray:
        """[num_docs, width] float64; feature index i goes to column i-1 (column i if zero_based)."""
        out = np.zeros((self.num_docs, width), dtype=np.float64)
        cols = self.feature_index if zero_based else self.feature_index - 1
        out[self.doc_rows, cols] = self.values
        return out


def vector_width(files: list[LetorFile]) -> tuple[int, bool]:
    """(width, zero_based) shared by several files: one column per index up to the highest."""
    zero_based = any(f.feature_index.size and f.min_index == 0 for f in files)
    top = max((f.max_index for f in files), default=0)
    return top + (1 if zero_based else 0), zero_based


def read_letor(path: str) -> LetorFile:
    """Reads a qid-layout or group-file-layout SVMlight file; RankerError names file and line."""
    if not storage.isfile(path):
        raise RankerError(f"{path}: LETOR file not found")
    labels, qids, chunks, counts, linenos, has_qid = _read_lines(path)
    index, values = _parse_pairs(path, chunks, counts, linenos)
    labels_arr = np.asarray(labels, dtype=np.float64)
    counts_arr = np.asarray(counts, dtype=np.int64)
    doc_of_entry = np.repeat(np.arange(len(labels), dtype=np.int64), counts_arr)

    group_file = None
    if has_qid:
        query_ids, order, sizes = _group_by_qid(qids)
    else:
        group_file, sizes = _read_group_file(path, len(labels))
        query_ids = [str(i) for i in range(len(sizes))]
        order = np.arange(len(labels), dtype=np.int64)
    # Re-number docs so each query's docs are contiguous (a no-op for the usual adjacent files).
    new_row = np.empty(len(labels), dtype=np.int64)
    new_row[order] = np.arange(len(labels), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return LetorFile(
        path=path,
        query_ids=query_ids,
        offsets=offsets,
        labels=labels_arr[order],
        doc_rows=new_row[doc_of_entry],
        feature_index=index,
        values=values,
        has_qid=bool(has_qid),
        group_file=group_file,
    )


def _read_lines(path: str):
    """Per data line: label, qid (qid layout), the 'idx:val' text, its token count, line number;
    and whether the file uses the qid layout."""
    labels: list[float] = []
    qids: list[str] = []
    chunks: list[str] = []
    counts: list[int] = []
    linenos: list[int] = []
    has_qid: bool | None = None
    with storage.open_file(path, "r", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            body = raw.split("#", 1)[0].strip()
            if not body:
                continue
            parts = body.split(None, 1)
            try:
                labels.append(float(parts[0]))
            except ValueError:
                raise RankerError(f"{path}:{lineno}: label {parts[0]!r} is not a number") from None
            rest = parts[1] if len(parts) > 1 else ""
            line_has_qid = rest.startswith("qid:")
            if has_qid is None:
                has_qid = line_has_qid
            elif has_qid != line_has_qid:
                raise RankerError(f"{path}:{lineno}: mixes lines with and without 'qid:'")
            if line_has_qid:
                qparts = rest.split(None, 1)
                if not qparts[0][4:]:
                    raise RankerError(f"{path}:{lineno}: empty qid")
                qids.append(qparts[0][4:])
                rest = qparts[1] if len(qparts) > 1 else ""
            chunks.append(rest)
            counts.append(rest.count(":"))
            linenos.append(lineno)
    if not labels:
        raise RankerError(f"{path}: no data lines")
    return labels, qids, chunks, counts, linenos, has_qid


def _parse_pairs(path, chunks, counts, linenos) -> tuple[np.ndarray, np.ndarray]:
    """All `idx:val` tokens at once with numpy's text parser (the per-token Python loop is 10x slower)."""
    text = " ".join(chunks).replace(":", " ")
    with warnings.catch_warnings():  # a bad token ends the parse early; the size check reports it
        warnings.simplefilter("ignore")
        flat = np.fromstring(text, dtype=np.float64, sep=" ") if text.strip() else np.zeros(0)
    if flat.size != 2 * sum(counts):
        _raise_first_bad_token(path, chunks, linenos)
    index = flat[0::2]
    if not np.all(index == np.round(index)) or (index.size and index.min() < 0):
        _raise_first_bad_token(path, chunks, linenos)
    return index.astype(np.int64), flat[1::2].copy()


def _raise_first_bad_token(path, chunks, linenos):
    for chunk, lineno in zip(chunks, linenos):
        for token in chunk.split():
            idx, sep, val = token.partition(":")
            try:
                ok = sep and int(idx) >= 0 and (float(val) or True)
            except ValueError:
                ok = False
            if not ok:
                raise RankerError(f"{path}:{lineno}: expected 'index:value', got {token!r}")
    raise RankerError(f"{path}: malformed 'index:value' tokens")


def _group_by_qid(qids: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Query ids in order of first appearance, a stable doc order grouping them, and group sizes."""
    first: dict[str, int] = {}
    codes = np.fromiter((first.setdefault(q, len(first)) for q in qids), dtype=np.int64,
                        count=len(qids))
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=len(first))
    return list(first), order, sizes


def _read_group_file(path: str, num_docs: int) -> tuple[str, np.ndarray]:
    candidates = [path + suffix for suffix in GROUP_SUFFIXES]
    group_path = next((c for c in candidates if storage.isfile(c)), None)
    if group_path is None:
        raise RankerError(
            f"{path}: lines carry no 'qid:' and the group file {candidates[0]} "
            "(docs per query, one integer a line) is missing")
    sizes = []
    with storage.open_file(group_path, "r") as fh:
        for lineno, raw in enumerate(fh, 1):
            text = raw.strip()
            if not text:
                continue
            try:
                size = int(text)
            except ValueError:
                raise RankerError(f"{group_path}:{lineno}: expected a doc count, got {text!r}") from None
            if size < 1:
                raise RankerError(f"{group_path}:{lineno}: a query needs at least one doc, got {size}")
            sizes.append(size)
    total = sum(sizes)
    if total != num_docs:
        raise RankerError(
            f"{group_path}: group sizes sum to {total} but {path} has {num_docs} docs")
    return group_path, np.asarray(sizes, dtype=np.int64)
