"""`ranker run`: the whole pipeline on the built-in synthetic world, every artefact under --workdir.

simulate → preprocess → train naive and the default two-tower variant → evaluate → export the
two-tower model's relevance tower (to a staging base)
→ validate against the last pushed version → push if blessed (to the base TF Serving polls), then a
short table: what debiasing bought on judged lists and on IPS-weighted clicks, and how well the bias
tower found the truth; WORKDIR/run.png and each model's propensity.png are the plots.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import sys
import time

from ranker.artifacts import LOG_GLOB, TRUTH_FILE, read_json, write_json
from ranker.models.config import ModelConfig

DEBIASED = ModelConfig.variant  # `ranker train`'s default two-tower variant (chosen on the scoreboard)
VARIANTS = ("naive", DEBIASED)
RUN_SUMMARY = "run_summary.json"
RUN_PLOT = "run.png"  # judged and IPS click nDCG@10 of the variants, with intervals
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """`ranker run`. The default world is one where debiasing matters: a logging policy driven
    mostly by its stale per-item error (quality 0.2), so a naive model learns the old ranker's
    mistakes. `world_knobs` are simulate_to_dir's keyword arguments (click_model, devices, …) a
    user changed from options.RUN_KNOB_DEFAULTS."""

    workdir: str = "work"  # every artefact lands under it
    seed: int = 0  # simulation and training
    epochs: int | None = None  # maximum epochs; None: train's step budget
    num_queries: int = 400  # logged queries of the world
    sessions_per_query: int = 50  # simulate's own default is smaller
    logging_quality: float = 0.2  # 0 random … 1 perfect
    min_ndcg: float = 0.5  # the validation gate's floor
    world_knobs: dict = dataclasses.field(default_factory=dict)


def _step(message: str) -> None:
    logger.info(message)


def format_table(metrics: dict, truth: dict | None, export_dir: str, validation: dict,
                 pushed: str | None) -> str:
    lines = ["", "variant     judged nDCG@10   IPS click nDCG@10 [95% CI]   click AUC   propensity error"]
    for variant, m in metrics.items():
        error, ips = m.get("propensity_error"), m.get("ips") or {}
        ips_text = f"{ips['ndcg@10']:.4f} [{ips['ci95'][0]:.4f}, {ips['ci95'][1]:.4f}]" if ips else "–"
        lines.append(f"{variant:<11} {m['judged']['ndcg@10']:>14.4f}   {ips_text:>26}   {m['clicks']['auc']:>9.4f}"
                     f"   {'–' if error is None else f'{error:.4f}':>16}")
    learned = metrics.get(DEBIASED, {}).get("propensity", {})
    if learned and truth:
        lines += ["", f"examination vs position 1 (learned by the {DEBIASED} bias tower / true)"]
        for device, curve in learned.items():
            true_curve = truth.get(device, [])
            pairs = [f"{a:.2f}/{b:.2f}" for a, b in zip(curve[1:5], true_curve[1:5])]
            lines.append(f"  {device:<8} positions 2-5: {'  '.join(pairs)}")
    lines += ["", f"exported relevance tower: {export_dir}",
              f"validation: {'BLESSED' if validation['blessed'] else 'NOT BLESSED'} ({validation['reason']})"]
    if pushed:
        lines.append(f"pushed to the serving base: {pushed}")
    return "\n".join(lines)


def run(**options) -> dict:
    """`ranker run` with RunOptions(**options); unknown keywords are world knobs."""
    fields = {f.name for f in dataclasses.fields(RunOptions)} - {"world_knobs"}
    return run_all(RunOptions(**{k: v for k, v in options.items() if k in fields},
                              world_knobs={k: v for k, v in options.items() if k not in fields}))


def run_all(opts: RunOptions) -> dict:
    """simulate → preprocess → train → evaluate → export → validate → push; the summary."""
    from ranker import report
    from ranker.models import evaluate, train
    from ranker.models.evaluate_view import PROPENSITY_PLOT
    from ranker.pipeline import preprocess
    from ranker.serving import export, push, validate
    from ranker.simulation import simulate
    from ranker.simulation.options import RUN_KNOB_DEFAULTS

    started, workdir, seed = time.time(), opts.workdir, opts.seed
    logs, data_dir = os.path.join(workdir, "logs"), os.path.join(workdir, "data")
    _step(f"1/6 simulating the synthetic world into {logs}")
    knobs = {**RUN_KNOB_DEFAULTS, **opts.world_knobs}
    simulate.simulate_to_dir(world="synthetic", letor_train=None, letor_test=None,
                             sessions_per_query=opts.sessions_per_query,
                             logging_quality=opts.logging_quality, seed=seed, output_dir=logs,
                             num_queries=opts.num_queries, **knobs)
    _step(f"2/6 preprocessing (Beam) into {data_dir}")
    preprocess.run_preprocess(os.path.join(logs, LOG_GLOB), data_dir, None, [])
    metrics = {}
    for i, variant in enumerate(VARIANTS):
        model_dir = os.path.join(workdir, "models", variant)
        _step(f"3/6 training {variant} ({i + 1}/{len(VARIANTS)}) in {model_dir}")
        train.train(data_dir, model_dir, variant=variant, epochs=opts.epochs, seed=seed, restart=True)
        _step(f"4/6 evaluating {variant}")
        metrics[variant] = evaluate.evaluate_to_file(data_dir, model_dir=model_dir)
    staging, serving = (os.path.join(workdir, base, "ranker") for base in ("staging", "serving"))
    _step(f"5/6 exporting the {DEBIASED} relevance tower under {staging}")
    candidate = export.export(os.path.join(workdir, "models", DEBIASED), staging)["export_dir"]
    _step(f"6/6 validating the export against the last version pushed to {serving}")
    validation = validate.validate(candidate, push.last_pushed(serving), data_dir,
                                   min_ndcg=opts.min_ndcg, max_regression=0.01)
    pushed = push.push(candidate, serving)["pushed"] if validation["blessed"] else None
    truth = read_json(os.path.join(data_dir, TRUTH_FILE), {}).get("propensity")
    plots = [report.plot_run(metrics, os.path.join(workdir, RUN_PLOT))]
    plots += [p for v in VARIANTS if os.path.exists(p := os.path.join(workdir, "models", v, PROPENSITY_PLOT))]
    print(format_table(metrics, truth, candidate, validation, pushed), file=sys.stderr)
    logger.info("plots: %s", ", ".join(plots))
    summary = {
        "workdir": os.path.abspath(workdir),
        "seconds": round(time.time() - started, 1),
        "judged_ndcg@10": {v: m["judged"]["ndcg@10"] for v, m in metrics.items()},
        "propensity_error": metrics[DEBIASED].get("propensity_error"),
        "export_dir": candidate,
        "blessed": validation["blessed"],
        "pushed": pushed,
        "plots": [os.path.relpath(p, workdir) for p in plots],
        "artefacts": sorted(os.path.relpath(p, workdir) for p in glob.glob(os.path.join(workdir, "*"))),
    }
    write_json(os.path.join(workdir, RUN_SUMMARY), summary)
    return summary
