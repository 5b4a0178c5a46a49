"""`ranker simulate`: a world, a logging policy and a click model → impression logs and the truth.

Writes into the output folder (docs/schema.md, "Impression logs"):
    impressions.jsonl.gz   one line per shown item of every session, with `clicked`
    judged.jsonl.gz        full candidate lists of the judged queries, `relevance` but no `clicked`
    feature_spec.json      the features the lines carry; max_list_size fits every judged list
    truth.json             what generated the clicks (truth.py: examination, propensity, devices,
                           trust bias, …)
    summary.json           the returned summary (counts, paths, impressions_per_second)
    oracle/                with `oracle_lists`: judged.jsonl.gz holding the full candidate lists of
                           the LOGGED queries (each candidate once, true grade, no `clicked`), its
                           feature_spec.json and a copy of truth.json: `ranker preprocess --input
                           'OUT/oracle/*.jsonl.gz'` gives a data dir whose judged split is the
                           oracle's training data

Deterministic: every random draw comes from child streams of np.random.default_rng(seed), sessions
are drawn in fixed-size blocks, and gzip headers carry mtime=0, so the same arguments give
byte-identical files.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np

from ranker.artifacts import (IMPRESSIONS_FILE, JUDGED_FILE, ORACLE_DIR, SUMMARY_FILE, TRUTH_FILE,
                              write_json)
from ranker import storage
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import devices as dv
from ranker.simulation import lines, worlds
from ranker.simulation.idworld import ids_world
from ranker.simulation.options import SimulateOptions
from ranker.simulation.sessions import Tally, simulate_sessions
from ranker.simulation.synthetic import synthetic_world
from ranker.simulation.truth import truth_record

logger = logging.getLogger(__name__)


def simulate_to_dir(**options) -> dict:
    """simulate(SimulateOptions(**options)): simulates click logs and judged lists into
    `output_dir`; returns the JSON-able summary. `devices` may be a comma-separated string of
    `name[:share[:eta]]` entries (devices.py) or a sequence of them."""
    devices = options.get("devices")
    if isinstance(devices, str):
        options["devices"] = tuple(d for d in devices.split(",") if d)
    elif devices is not None:
        options["devices"] = tuple(devices)
    return simulate(SimulateOptions(**options))


def simulate(opts: SimulateOptions) -> dict:
    """`simulate_to_dir` on checked options."""
    start = time.perf_counter()
    opts.check()
    devices = dv.parse_devices(opts.devices, opts.top_examination, opts.examination_curve)
    world_rng, session_rng = np.random.default_rng(opts.seed).spawn(2)
    w = build_world(opts, world_rng)
    paths = _make_output(opts.output_dir, w)
    tally = _write_impressions(paths["impressions_path"], w, opts, devices, session_rng)
    if w.judged is not None:
        _write_lines(paths["judged_path"], lines.judged_lines(w.judged, opts.logging_quality))
    w.spec.save(paths["feature_spec_path"])
    write_json(paths["truth_path"], truth_record(opts, w, devices, tally))
    if opts.oracle_lists:
        _write_oracle(paths, w, opts.logging_quality)
    summary = _summary(opts, w, devices, tally, paths, time.perf_counter() - start)
    write_json(os.path.join(opts.output_dir, SUMMARY_FILE), summary)
    logger.info("wrote %d impressions (%d clicks) in %.2fs = %d/s to %s", tally.impressions,
                tally.clicks, summary["seconds"], summary["impressions_per_second"], opts.output_dir)
    return summary


def build_world(opts: SimulateOptions, rng: np.random.Generator) -> worlds.World:
    if opts.world == "synthetic":
        return synthetic_world(opts.num_queries, opts.judged_count(), rng)
    if opts.world == "ids":
        return ids_world(opts.num_queries, opts.judged_count(), rng)
    return worlds.letor_world(opts.letor_train, opts.letor_test, rng)


def _make_output(output_dir: str, w: worlds.World) -> dict:
    try:
        storage.makedirs(output_dir)
    except OSError as err:
        raise RankerError(f"--output {output_dir}: cannot create folder ({err.strerror})") from None
    return {
        "impressions_path": os.path.join(output_dir, IMPRESSIONS_FILE),
        "judged_path": os.path.join(output_dir, JUDGED_FILE) if w.judged is not None else None,
        "feature_spec_path": os.path.join(output_dir, fs.SPEC_FILENAME),
        "truth_path": os.path.join(output_dir, TRUTH_FILE),
        "oracle_dir": None,
    }


def _write_impressions(path: str, w: worlds.World, opts: SimulateOptions,
                       devices: list[dv.Device], rng: np.random.Generator) -> Tally:
    names = [d.name for d in devices]
    tally = Tally(names)
    tails = lines.item_fragments(w.logged)
    contexts = [lines.dumps(c) for c in w.logged.context]
    total = w.logged.num_queries * opts.sessions_per_query
    blocks = simulate_sessions(w.logged, opts.sessions_per_query, opts.logging_quality,
                               opts.click_model, devices, w.max_relevance, rng, opts.examine_all,
                               opts.trust_bias)
    with lines.gzip_writer(path) as out:
        for block in blocks:
            out.write(lines.session_lines(w.logged, block, names, tails, contexts).encode("utf-8"))
            tally.add(block)
            logger.info("%d/%d sessions, %d impressions", tally.sessions, total, tally.impressions)
    return tally


def _write_lines(path: str, text: str) -> None:
    with lines.gzip_writer(path) as out:
        out.write(text.encode("utf-8"))


def _write_oracle(paths: dict, w: worlds.World, logging_quality: float) -> None:
    """Full candidate lists of the logged queries (+ a spec that holds them and truth.json)."""
    oracle_dir = os.path.join(storage.parent(paths["truth_path"]), ORACLE_DIR)
    storage.makedirs(oracle_dir)
    _write_lines(os.path.join(oracle_dir, JUDGED_FILE), lines.judged_lines(w.logged, logging_quality))
    longest = max(int(qs.lengths.max()) for qs in (w.logged, w.judged) if qs is not None)
    spec = dataclasses.replace(w.spec, max_list_size=worlds.max_list_size(longest))
    spec.save(os.path.join(oracle_dir, fs.SPEC_FILENAME))
    storage.copy(paths["truth_path"], os.path.join(oracle_dir, TRUTH_FILE))
    paths["oracle_dir"] = oracle_dir


def _summary(opts: SimulateOptions, w: worlds.World, devices: list[dv.Device], tally: Tally,
             paths: dict, elapsed: float) -> dict:
    return {
        "output_dir": opts.output_dir,
        **paths,
        "world": w.name,
        "click_model": opts.click_model,
        "logging_quality": float(opts.logging_quality),
        "devices": [d.name for d in devices],
        "seed": opts.seed,
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


__all__ = ["simulate_to_dir", "simulate", "build_world", "IMPRESSIONS_FILE", "JUDGED_FILE",
           "TRUTH_FILE", "SUMMARY_FILE", "ORACLE_DIR"]
