"""`ranker run` and `ranker ablation`: the whole pipeline, and arms × seeds."""
from __future__ import annotations

from ranker.ablation import OVERRIDES, AblationOptions
from ranker.commands import data, default, options, verb_parser
from ranker.workflow import RunOptions


def _run(args, beam_args):
    from ranker import workflow
    from ranker.simulation.options import RUN_KNOB_DEFAULTS

    # Simulator knobs go to workflow.run only when changed, as keyword arguments of simulate_to_dir.
    knobs = {k: getattr(args, k) for k, knob_default in RUN_KNOB_DEFAULTS.items()
             if getattr(args, k) != knob_default}
    result = workflow.run_all(options(RunOptions, args, world_knobs=knobs))
    return result, 0 if result["blessed"] else 1  # NOT BLESSED is a failure of the run


def _ablation(args, beam_args):
    from ranker import ablation

    variants = tuple(v for v in args.variants.split(",") if v)
    return ablation.ablate(options(AblationOptions, args, variants=variants))


def add_run(sub):
    p = verb_parser(sub, "run", "simulate → preprocess → train → evaluate → export → validate")
    p.add_argument("--workdir", default=default(RunOptions, "workdir"),
                   help="every artefact lands under this folder")
    p.add_argument("--seed", type=int, default=default(RunOptions, "seed"), help="simulation and training seed")
    p.add_argument("--epochs", type=int, default=default(RunOptions, "epochs"),
                   help="maximum epochs (%(default)s: train's step budget)")
    data.add_world_size(p, RunOptions)
    p.add_argument("--min-ndcg", type=float, default=default(RunOptions, "min_ndcg"),
                   help="the validation gate's floor")
    data.add_world_knobs(p)
    p.set_defaults(func=_run)


def add_ablation(sub):
    p = verb_parser(sub, "ablation", "train arms over seeds; report.md, report.json, plots")
    p.add_argument("--data", required=True, help="preprocess output(s), comma-separated: one row each")
    p.add_argument("--variants", default=",".join(default(AblationOptions, "variants")),
                   help=f"arms: variant[:key=value…] (keys: {', '.join(OVERRIDES)}) or a tree peer "
                        "(xgboost, xgboost-unbiased, lightgbm, lightgbm-position; needs the bench extra)")
    p.add_argument("--seeds", type=int, default=default(AblationOptions, "seeds"), help="training seeds per arm")
    p.add_argument("--epochs", type=int, default=default(AblationOptions, "epochs"),
                   help="override train's epoch budget")
    p.add_argument("--gap-reference", default=default(AblationOptions, "gap_reference"),
                   help="arm whose nDCG is the top of the gap naive → reference (e.g. an arm trained "
                        "with train-data=<unbiased clicks>)")
    p.add_argument("--output", required=True, help="folder for report.md, report.json, plots, runs/")
    p.set_defaults(func=_ablation)
