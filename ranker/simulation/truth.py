"""truth.json: what generated the clicks, in the terms downstream code compares a model with.

* PBM: `examination` {device: [p(seen | k)]} (absolute) and `propensity` {device: [1.0, p2, …]}
  (examination relative to position 1: what a model's read-off is compared with).
* cascade: there is no position propensity (whether slot k is seen depends on the clicks above
  it): `propensity` and `examination` are null, `examination_rate` holds the empirical fraction of
  shown impressions at each position that were examined, and `scan_curve` the curve whose ratios
  e(k+1)/e(k) are the probabilities of going on after a skip.
* examine_all: every shown item examined, clicks independent given attractiveness, under every
  click model; `examination` and `propensity` are all ones, and no other curve is written.
"""
from __future__ import annotations

from ranker.simulation import clicks as ck
from ranker.simulation import devices as dv
from ranker.simulation import worlds
from ranker.simulation.lines import number
from ranker.simulation.options import (CLICK_NOISE, NUM_SHOWN, TRUST_BIAS_FORM,
                                       SimulateOptions)
from ranker.simulation.sessions import Tally

PBM_NOTE = ("pbm: p(seen | k, device) = top_examination * (1/k)^eta, or the device's explicit "
            "curve; propensity = examination relative to position 1")
CASCADE_NOTE = ("cascade: no position propensity exists; examination_rate = empirical fraction of "
                "shown impressions at each position that were examined; after a skip at k the user "
                "goes on to k+1 with p = min(1, scan_curve[k+1] / scan_curve[k]), and stops after a click")
EXAMINE_ALL_NOTE = ("examine_all: every shown item is examined and clicks are independent given "
                    "attractiveness under every click model (no cascade stop, no trust bias, no "
                    "top-examination below 1): clicks free of position bias")


def position_bias(opts: SimulateOptions, devices: list[dv.Device], tally: Tally) -> dict:
    """The examination part of truth.json (see the module docstring)."""
    rate = tally.examination_rate()
    if opts.examine_all:
        ones = {d.name: [1.0] * NUM_SHOWN for d in devices}
        return {"examination": ones, "propensity": ones, "examination_rate": rate,
                "examination_note": EXAMINE_ALL_NOTE}
    curves = {d.name: list(d.examination) for d in devices}
    if opts.click_model == "pbm":
        return {"examination": curves, "propensity": {d.name: d.propensity for d in devices},
                "examination_rate": rate, "examination_note": PBM_NOTE}
    return {"examination": None, "propensity": None, "examination_rate": rate,
            "scan_curve": curves, "examination_note": CASCADE_NOTE}


def truth_record(opts: SimulateOptions, world: worlds.World, devices: list[dv.Device],
                 tally: Tally) -> dict:
    trust_bias = 0.0 if opts.examine_all else float(opts.trust_bias)
    return {
        "world": world.name,
        "click_model": opts.click_model,
        "logging_quality": float(opts.logging_quality),
        "click_noise": CLICK_NOISE,
        "examine_all": bool(opts.examine_all),
        "max_relevance": number(world.max_relevance),
        "devices": [d.name for d in devices],
        "device_share": {d.name: d.share for d in devices},
        "device_eta": {d.name: d.eta for d in devices},  # null: the device has an explicit curve
        "examination_curve_file": opts.examination_curve,
        "top_examination": 1.0 if opts.examine_all else float(opts.top_examination),
        "trust_bias": trust_bias,
        "trust_bias_form": TRUST_BIAS_FORM,
        "click_noise_by_position": [float(v) for v in ck.position_noise(trust_bias)],
        **position_bias(opts, devices, tally),
        "requested": {"click_model": opts.click_model, "top_examination": opts.top_examination,
                      "trust_bias": opts.trust_bias, "examine_all": bool(opts.examine_all)},
        "sessions_per_query": opts.sessions_per_query,
        "queries": {"logged": world.logged.num_queries,
                    "judged": world.judged.num_queries if world.judged is not None else 0},
        "impressions": tally.impressions,
        "clicks": tally.clicks,
        "ctr_by_position": tally.ctr(),
        "labels": worlds.describe(world),
        "policy_jitter": ck.POLICY_JITTER,
        "seed": opts.seed,
        "world_info": world.info,
    }
