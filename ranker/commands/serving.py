"""`ranker export` and `ranker validate`: the served artefact and its gate."""
from __future__ import annotations

import sys

from ranker.commands import call, verb_parser


def _export(args, beam_args):
    from ranker.serving import export

    return call(export.export, args)


def _validate(args, beam_args):
    from ranker.serving import validate

    result = call(validate.validate, args)
    if not result["blessed"]:
        print(f"NOT BLESSED: {result['reason']}", file=sys.stderr)
        return result, 1
    return result


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
    p.add_argument("--metric", help="judged-ndcg@10 or click-log-loss (σ(relevance) on the eval split,"
                   " lower is better); default: judged-ndcg@10 where the data has judged lists, else"
                   " click-log-loss")
    p.add_argument("--min-ndcg", type=float, default=None,
                   help="floor of an nDCG metric (%(default)s: 0.5); refused with click-log-loss")
    p.add_argument("--max-log-loss", type=float, default=None,
                   help="ceiling of click-log-loss (%(default)s: none); refused with nDCG metrics")
    p.add_argument("--max-regression", type=float, default=0.01,
                   help="largest loss against --baseline, in the metric's units")
    p.set_defaults(func=_validate)
