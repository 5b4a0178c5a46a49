"""`ranker simulate`: a world, a logging policy and a click model → impression logs and the truth.

Writes into the output folder (SPEC.md, "Impression log"):
    impressions.jsonl.gz   one line per shown item of every session, with `clicked`
    judged.jsonl.gz        full candidate lists of the held-out queries, `relevance` but no `clicked`
    feature_spec.json      the features the lines carry
    truth.json             what generated the clicks (examination curves, propensities, …);
                           for cascade these are the simulated empirical examination rates
                           per position and device, not a fixed curve (see _Tally.examination)
    summary.json           the returned summary (counts, paths, impressions_per_second)

Deterministic: every random draw comes from child streams of np.random.default_rng(seed), sessions
are drawn in fixed-size blocks, and gzip headers carry mtime=0, so the same arguments give
byte-identical files. Lines are built from pre-serialised per-item and per-query fragments with
f-strings (json.dumps per line is several times slower).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
import sys
import time
from typing import Iterator

import numpy as np

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import clicks as ck
from ranker.simulation import worlds

IMPRESSIONS_FILE = "impressions.jsonl.gz"
JUDGED_FILE = "judged.jsonl.gz"
TRUTH_FILE = "truth.json"
SUMMARY_FILE = "summary.json"
WORLDS = ("synthetic", "letor")
BASE_TIMESTAMP = 1_700_000_000  # 2023-11-14; sessions of a query spread over LOG_WINDOW_S
LOG_WINDOW_S = 30 * 24 * 3600
SESSIONS_PER_BLOCK = 20_000
GZIP_LEVEL = 1  # level 6 halves the size of feature-heavy logs but costs ~3x the time
_COMPACT = (",", ":")


def simulate_to_dir(world: str, letor_train: str | None, letor_test: str | None,
                    sessions_per_query: int, logging_quality: float, click_model: str,
                    devices: list[str], seed: int, output_dir: str, num_queries: int = 400,
                    examine_all: bool = False) -> dict:
    """Simulates click logs and judged lists into `output_dir`; returns the JSON-able summary.

    `num_queries` applies to the synthetic world only (a LETOR world has the queries of its files).
    `examine_all` makes every shown item examined: the same sessions (same seed, same rankings and
    devices) with clicks free of position bias, the "unbiased clicks" reference that separates
    click noise from position bias in the naive → oracle gap.
    """
    start = time.perf_counter()
    _check_args(world, letor_train, letor_test, sessions_per_query, logging_quality, click_model)
    devices = ck.check_devices(devices)
    world_rng, session_rng = np.random.default_rng(seed).spawn(2)
    if world == "synthetic":
        w = worlds.synthetic_world(num_queries, world_rng)
    else:
        w = worlds.letor_world(letor_train, letor_test, world_rng)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as err:
        raise RankerError(f"--output {output_dir}: cannot create folder ({err.strerror})") from None

    impressions_path = os.path.join(output_dir, IMPRESSIONS_FILE)
    judged_path = os.path.join(output_dir, JUDGED_FILE) if w.judged is not None else None
    spec_path = os.path.join(output_dir, fs.SPEC_FILENAME)
    truth_path = os.path.join(output_dir, TRUTH_FILE)

    tally = _Tally(devices)
    tails = item_fragments(w.logged)
    contexts = [_dumps(c) for c in w.logged.context]
    total_sessions = w.logged.num_queries * sessions_per_query
    with _gzip_writer(impressions_path) as out:
        for block in simulate_sessions(w.logged, sessions_per_query, logging_quality, click_model,
                                       devices, w.max_relevance, session_rng, examine_all):
            out.write(session_lines(w.logged, block, devices, tails, contexts).encode("utf-8"))
            tally.add(block)
            _log(f"{tally.sessions}/{total_sessions} sessions, {tally.impressions} impressions")
    if w.judged is not None:
        with _gzip_writer(judged_path) as out:
            out.write(judged_lines(w.judged, logging_quality).encode("utf-8"))
    w.spec.save(spec_path)

    truth = {
        "world": w.name,
        "click_model": click_model,
        "logging_quality": float(logging_quality),
        "click_noise": ck.CLICK_NOISE,
        "examine_all": examine_all,
        "max_relevance": _number(w.max_relevance),
        "devices": devices,
        "device_share": ck.device_shares(devices),
        "device_eta": {d: ck.device_eta(d) for d in devices},
        **tally.examination(click_model, examine_all),
        "sessions_per_query": sessions_per_query,
        "queries": {"logged": w.logged.num_queries,
                    "judged": w.judged.num_queries if w.judged is not None else 0},
        "impressions": tally.impressions,
        "clicks": tally.clicks,
        "ctr_by_position": tally.ctr(),
        "labels": worlds.describe(w),
        "policy_jitter": ck.POLICY_JITTER,
        "seed": seed,
        "world_info": w.info,
    }
    _write_json(truth_path, truth)

    elapsed = time.perf_counter() - start
    summary = {
        "output_dir": output_dir,
        "impressions_path": impressions_path,
        "judged_path": judged_path,
        "feature_spec_path": spec_path,
        "truth_path": truth_path,
        "world": w.name,
        "click_model": click_model,
        "logging_quality": float(logging_quality),
        "devices": devices,
        "seed": seed,
        "logged_queries": w.logged.num_queries,
        "judged_queries": w.judged.num_queries if w.judged is not None else 0,
        "judged_items": w.judged.num_items if w.judged is not None else 0,
        "sessions": tally.sessions,
        "impressions": tally.impressions,
        "clicks": tally.clicks,
        "ctr": round(tally.clicks / max(tally.impressions, 1), 6),
        "max_list_size": w.spec.max_list_size,
        "item_features": fs.names(w.spec.item),
        "context_features": fs.names(w.spec.context),
        "seconds": round(elapsed, 3),
        "impressions_per_second": round(tally.impressions / max(elapsed, 1e-9)),
    }
    _write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    _log(f"wrote {tally.impressions} impressions ({tally.clicks} clicks) in {elapsed:.2f}s "
         f"= {summary['impressions_per_second']}/s to {output_dir}")
    return summary


def _check_args(world, letor_train, letor_test, sessions_per_query, logging_quality, click_model):
    if world not in WORLDS:
        raise RankerError(f"--world must be one of {', '.join(WORLDS)}, got {world!r}")
    if world == "letor" and not letor_train:
        raise RankerError("--world letor needs --letor-train PATH")
    if world != "letor" and (letor_train or letor_test):
        raise RankerError("--letor-train/--letor-test only apply to --world letor")
    for flag, path in (("--letor-train", letor_train), ("--letor-test", letor_test)):
        if path and not os.path.isfile(path):
            raise RankerError(f"{flag} {path}: file not found")
    if not isinstance(sessions_per_query, int) or sessions_per_query < 1:
        raise RankerError(f"--sessions-per-query must be a positive integer, got {sessions_per_query!r}")
    if not (isinstance(logging_quality, (int, float)) and 0.0 <= logging_quality <= 1.0):
        raise RankerError(f"--logging-quality must be in [0, 1], got {logging_quality!r}")
    if click_model not in ck.CLICK_MODELS:
        raise RankerError(f"--click-model must be one of {', '.join(ck.CLICK_MODELS)}, got {click_model!r}")


# ---------------------------------------------------------------------------------------------
# sessions


@dataclasses.dataclass
class SessionBlock:
    """A block of sessions: per session its query, number within the query, device and time;
    per slot ([sessions, 10]) the shown item (global index into the QuerySet, -1 = empty slot)."""

    query: np.ndarray
    number: np.ndarray
    device: np.ndarray  # index into the device list
    timestamp: np.ndarray
    shown: np.ndarray
    valid: np.ndarray
    clicked: np.ndarray
    examined: np.ndarray


def simulate_sessions(qs: worlds.QuerySet, sessions_per_query: int, logging_quality: float,
                      click_model: str, devices: list[str], max_relevance: float,
                      rng: np.random.Generator, examine_all: bool = False) -> Iterator[SessionBlock]:
    """Sessions of every query (query-major), in blocks of about SESSIONS_PER_BLOCK sessions."""
    policy_rng, device_rng, time_rng, click_rng = rng.spawn(4)
    shares = ck.device_shares(devices)
    p_device = np.array([shares[d] for d in devices])
    curves = np.stack([ck.examination_curve(d) for d in devices])  # [D, 10]
    if examine_all:
        curves = np.ones_like(curves)
    base = qs.padded(ck.policy_scores(worlds.by_query_z(qs.latent, qs.offsets), qs.stale,
                                      logging_quality))
    lengths = qs.lengths
    attract_all = ck.attractiveness(qs.relevance, max_relevance)
    queries_per_block = max(1, SESSIONS_PER_BLOCK // sessions_per_query)
    for first in range(0, qs.num_queries, queries_per_block):
        block_queries = np.arange(first, min(first + queries_per_block, qs.num_queries))
        query = np.repeat(block_queries, sessions_per_query)
        number = np.tile(np.arange(sessions_per_query), len(block_queries))
        local, valid = ck.rank_sessions(base, lengths, query, policy_rng)
        shown = np.where(valid, qs.offsets[query][:, None] + local, -1)
        device = device_rng.choice(len(devices), size=len(query), p=p_device)
        # Sessions of a query spread over the window in order of their number.
        slot = (number + time_rng.random(len(query))) / sessions_per_query
        timestamp = BASE_TIMESTAMP + (slot * LOG_WINDOW_S).astype(np.int64)
        attract = np.where(valid, attract_all[np.maximum(shown, 0)], 0.0)
        exam = curves[device][:, : shown.shape[1]]
        model = ck.pbm_clicks if click_model == "pbm" else ck.cascade_clicks
        clicked, examined = model(attract, exam, valid, click_rng)
        yield SessionBlock(query, number, device, timestamp, shown, valid, clicked, examined)


class _Tally:
    """Counts per device and position: impressions, clicks, examined (for cascade's empirical curve)."""

    def __init__(self, devices: list[str]):
        self.devices = devices
        shape = (len(devices), ck.NUM_SHOWN)
        self.shown = np.zeros(shape, dtype=np.int64)
        self.examined = np.zeros(shape, dtype=np.int64)
        self.clicked = np.zeros(shape, dtype=np.int64)
        self.sessions = 0

    def add(self, block: SessionBlock) -> None:
        k = block.shown.shape[1]
        for d in range(len(self.devices)):
            rows = block.device == d
            self.shown[d, :k] += block.valid[rows].sum(axis=0)
            self.examined[d, :k] += block.examined[rows].sum(axis=0)
            self.clicked[d, :k] += block.clicked[rows].sum(axis=0)
        self.sessions += len(block.query)

    @property
    def impressions(self) -> int:
        return int(self.shown.sum())

    @property
    def clicks(self) -> int:
        return int(self.clicked.sum())

    def ctr(self) -> dict[str, list]:
        return {d: _rates(self.clicked[i], self.shown[i]) for i, d in enumerate(self.devices)}

    def examination(self, click_model: str, examine_all: bool = False) -> dict:
        """PBM: the fixed curves. Cascade: empirical examination rates (no fixed curve exists there:
        whether slot k is seen depends on clicks above it), with propensity relative to slot 1."""
        if click_model == "pbm" and not examine_all:
            exam = {d: [float(v) for v in ck.examination_curve(d)] for d in self.devices}
            note = "pbm: p(seen|pos,device) = (1/pos)^eta"
        else:
            exam = {d: _rates(self.examined[i], self.shown[i]) for i, d in enumerate(self.devices)}
            note = ("cascade: empirical fraction of shown impressions at each position that were "
                    "examined; continuation p(seen|k+1)/p(seen|k) of the (1/pos)^eta curve")
            if examine_all:
                note = "every shown item examined (no position bias)"
        propensity = {}
        for d, curve in exam.items():
            top = curve[0]
            propensity[d] = [None if (v is None or not top) else v / top for v in curve]
        return {"examination": exam, "propensity": propensity, "examination_note": note}


def _rates(num: np.ndarray, den: np.ndarray) -> list:
    return [None if n_den == 0 else float(n_num) / float(n_den) for n_num, n_den in zip(num, den)]


# ---------------------------------------------------------------------------------------------
# serialisation


def _dumps(obj) -> str:
    return json.dumps(obj, separators=_COMPACT, ensure_ascii=False)


def _number(value: float):
    value = float(value)
    return int(value) if value.is_integer() else value


def _feature_fragments(values: np.ndarray) -> list[str]:
    """JSON text of each item's value of one feature."""
    if values.dtype.kind in "US":
        return [json.dumps(v, ensure_ascii=False) for v in values.tolist()]
    if values.ndim == 1:
        return [repr(_number(v)) for v in values.tolist()]
    # Vectors: format each distinct value once (LETOR rows repeat few values; json.dumps per row is
    # ~5x slower), integral values as ints so sparse rows stay short (smaller files, faster gzip).
    distinct, inverse = np.unique(values, return_inverse=True)
    if not np.all(np.isfinite(distinct)):
        raise RankerError("feature vectors must be finite numbers")
    text = np.array([repr(_number(v)) for v in distinct.tolist()], dtype=object)
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
        out.append(f'"{fs.ITEM_ID}":{json.dumps(item_id)},"{fs.RELEVANCE}":{_number(rel)!r},'
                   f'"features":{{{features}}}')
    return out


def session_lines(qs: worlds.QuerySet, block: SessionBlock, devices: list[str],
                  tails: list[str], contexts: list[str]) -> str:
    """The block's impression lines, session by session, top slot first."""
    qids = qs.query_ids
    heads = [
        f'{{"{fs.REQUEST_ID}":"{qids[q]}-{n}","{fs.DEVICE}":"{devices[d]}",'
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
    contexts = [_dumps(c) for c in qs.context]
    score = ck.policy_scores(worlds.by_query_z(qs.latent, qs.offsets), qs.stale, logging_quality)
    lines = []
    for q, qid in enumerate(qs.query_ids):
        lo, hi = int(qs.offsets[q]), int(qs.offsets[q + 1])
        order = lo + np.argsort(-score[lo:hi], kind="stable")
        head = (f'{{"{fs.REQUEST_ID}":"judged-{qid}","{fs.DEVICE}":"{ck.JUDGED_DEVICE}",'
                f'"{fs.TIMESTAMP}":{BASE_TIMESTAMP},"context":{contexts[q]},"{fs.POSITION}":')
        lines.extend(f"{head}{p},{tails[i]}}}\n" for p, i in enumerate(order.tolist(), 1))
    return "".join(lines)


class _gzip_writer:
    """gzip with mtime=0 and a fixed header name, so equal content gives equal bytes."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self._raw = open(self.path, "wb")
        self._gz = gzip.GzipFile(filename=os.path.basename(self.path), mode="wb",
                                 fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gz

    def __exit__(self, *exc):
        self._gz.close()
        self._raw.close()
        return False


def _write_json(path: str, obj) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, allow_nan=False)
        fh.write("\n")


def _log(message: str) -> None:
    print(f"simulate: {message}", file=sys.stderr, flush=True)


__all__ = ["simulate_to_dir", "simulate_sessions", "SessionBlock", "item_fragments",
           "session_lines", "judged_lines", "IMPRESSIONS_FILE", "JUDGED_FILE", "TRUTH_FILE",
           "SUMMARY_FILE"]
