"""`ranker export` and `ranker validate`: the served artefact and its gate."""
from __future__ import annotations

import sys

from ranker.commands import default, options, verb_parser
from ranker.serving import gate_metrics
from ranker.serving.options import ExportOptions, ValidateOptions


def _export(args, beam_args):
    from ranker.serving import export

    opts = options(ExportOptions, args)
    return export.export(opts.model_dir, opts.export_base)


def _validate(args, beam_args):
    from ranker.serving import validate

    result = validate.judge(options(ValidateOptions, args, device_floor=_floors(args.device_floor)))
    if not result["blessed"]:
        print(f"NOT BLESSED: {result['reason']}", file=sys.stderr)
        return result, 1
    return result


def _floors(given: list[str] | None) -> dict[str, float] | None:
    """`--device-floor mobile=0.6` (repeatable) → {"mobile": 0.6}."""
    from ranker.errors import RankerError

    floors = {}
    for text in given or []:
        device, _, value = text.partition("=")
        try:
            floors[device] = float(value)
        except ValueError:
            raise RankerError(f"--device-floor takes DEVICE=VALUE, got {text!r}") from None
    return floors or None


def add_export(sub):
    p = verb_parser(sub, "export", "SavedModel of the relevance tower for TF Serving")
    p.add_argument("--model-dir", required=True, help="a trained model dir (ranker train)")
    p.add_argument("--export-base", required=True,
                   help="writes BASE/<next integer version>/, BASE/models.config and"
                        " BASE/batching_parameters.txt (nothing outside BASE)")
    p.set_defaults(func=_export)


def add_validate(sub):
    p = verb_parser(sub, "validate", "model-validation gate: candidate vs baseline")
    p.add_argument("--candidate", required=True, help="exported SavedModel version folder")
    p.add_argument("--baseline", help="last blessed SavedModel (optional on a first run)")
    p.add_argument("--data", required=True, help="preprocess output the gate evaluates on")
    p.add_argument("--metric", choices=gate_metrics.GATE_METRICS,
                   help="judged-ndcg@10 (judged lists), ips-ndcg@10 (IPS-weighted click nDCG on the eval"
                   " split) or click-log-loss (σ(relevance), lower is better); default: judged-ndcg@10"
                   " where the data has judged lists, else ips-ndcg@10")
    p.add_argument("--propensities", default=default(ValidateOptions, "propensities"),
                   help="ips-ndcg@10's propensities: auto (truth.json, else the harvested estimate),"
                   " truth, harvested, or a JSON file {device: [p1, p2, ...]}")
    p.add_argument("--device-floor", action="append", metavar="DEVICE=VALUE",
                   help="ips-ndcg@10 on one device's lists must reach VALUE (repeatable)")
    p.add_argument("--min-ndcg", type=float, default=default(ValidateOptions, "min_ndcg"),
                   help=f"floor of an nDCG metric (%(default)s: {gate_metrics.DEFAULT_MIN_NDCG});"
                   " refused with click-log-loss")
    p.add_argument("--max-log-loss", type=float, default=default(ValidateOptions, "max_log_loss"),
                   help="ceiling of click-log-loss (%(default)s: none); refused with nDCG metrics")
    p.add_argument("--max-regression", type=float, default=default(ValidateOptions, "max_regression"),
                   help="largest loss against --baseline, in the metric's units, tolerated; a larger"
                   " one blocks when it is beyond the 95%% paired-bootstrap interval of the change")
    p.set_defaults(func=_validate)
