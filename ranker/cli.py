"""`ranker <verb>`: argument parsing only; each verb calls one function of the package.

Heavy imports (TensorFlow, Beam) happen inside the verb that needs them so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ranker.errors import RankerError

VARIANTS = ("naive", "position-feature", "pal", "additive", "oracle")


def _simulate(args, beam_args):
    from ranker.simulation import simulate

    return simulate.simulate_to_dir(
        world=args.world,
        letor_train=args.letor_train,
        letor_test=args.letor_test,
        sessions_per_query=args.sessions_per_query,
        logging_quality=args.logging_quality,
        click_model=args.click_model,
        devices=[d for d in args.devices.split(",") if d],
        seed=args.seed,
        output_dir=args.output,
        num_queries=args.num_queries,
        examine_all=args.examine_all,
    )


def _preprocess(args, beam_args):
    from ranker.pipeline import preprocess

    return preprocess.run_preprocess(
        input_pattern=args.input,
        output_dir=args.output,
        feature_spec_path=args.feature_spec,
        beam_args=beam_args,
    )


def _train(args, beam_args):
    from ranker.models import train

    return train.train(
        data_dir=args.data,
        model_dir=args.model_dir,
        variant=args.variant,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        position_dropout=args.position_dropout,
        bias_dropout=args.bias_dropout,
        loss=args.loss,
        learning_rate=args.learning_rate,
        strategy=args.strategy,
        backup_every=args.backup_every,
    )


def _evaluate(args, beam_args):
    from ranker.models import evaluate

    if bool(args.model_dir) == bool(args.saved_model):
        raise RankerError("evaluate: give exactly one of --model-dir or --saved-model")
    return evaluate.evaluate_to_file(
        data_dir=args.data,
        model_dir=args.model_dir,
        saved_model=args.saved_model,
        split=args.split,
        output=args.output,
    )


def _export(args, beam_args):
    from ranker.serving import export

    return export.export(model_dir=args.model_dir, export_base=args.export_base)


def _validate(args, beam_args):
    from ranker.serving import validate

    result = validate.validate(
        candidate=args.candidate,
        baseline=args.baseline,
        data_dir=args.data,
        min_ndcg=args.min_ndcg,
        max_regression=args.max_regression,
    )
    if not result["blessed"]:
        print(f"NOT BLESSED: {result['reason']}", file=sys.stderr)
        return result, 1
    return result


def _run(args, beam_args):
    from ranker import workflow

    return workflow.run(workdir=args.workdir, seed=args.seed, epochs=args.epochs,
                        num_queries=args.num_queries, sessions_per_query=args.sessions_per_query,
                        logging_quality=args.logging_quality, min_ndcg=args.min_ndcg)


def _ablation(args, beam_args):
    from ranker import ablation

    return ablation.run_ablation(
        data_dir=args.data,
        variants=[v for v in args.variants.split(",") if v],
        seeds=args.seeds,
        output_dir=args.output,
        epochs=args.epochs,
    )


def _add_simulate(sub):
    p = sub.add_parser("simulate", help="write impression logs with position-biased clicks")
    p.add_argument("--world", choices=("synthetic", "letor"), default="synthetic")
    p.add_argument("--letor-train", help="SVMlight file (qid: lines, or a .query group file beside it)")
    p.add_argument("--letor-test", help="SVMlight file whose lists become judged lists")
    p.add_argument("--num-queries", type=int, default=400, help="synthetic world: logged queries")
    p.add_argument("--sessions-per-query", type=int, default=20)
    p.add_argument("--logging-quality", type=float, default=0.5, help="0 random … 1 perfect")
    p.add_argument("--click-model", choices=("pbm", "cascade"), default="pbm")
    p.add_argument("--devices", default="desktop,mobile,tablet")
    p.add_argument("--examine-all", action="store_true",
                   help="every shown item is examined: unbiased clicks of the same sessions (a reference)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="folder for logs, feature_spec.json, truth.json")
    p.set_defaults(func=_simulate)


def _add_preprocess(sub):
    p = sub.add_parser("preprocess", help="the Beam job: logs → ELWC TFRecords, vocabularies, stats")
    p.add_argument("--input", required=True, help="glob of .jsonl, .jsonl.gz or .parquet logs")
    p.add_argument("--output", required=True)
    p.add_argument("--feature-spec", help="default: feature_spec.json beside the logs")
    p.set_defaults(func=_preprocess, beam_passthrough=True)


def _add_train(sub):
    p = sub.add_parser("train", help="train one model variant on preprocess output")
    p.add_argument("--data", required=True, help="preprocess output folder")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--variant", choices=VARIANTS, default="additive")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128, help="lists per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--position-dropout", type=float, default=0.1)
    p.add_argument("--bias-dropout", type=float, default=0.0,
                   help="probability of zeroing the whole bias logit (Zhang et al. use 0.5)")
    p.add_argument("--loss", choices=("pointwise", "listwise"), default="pointwise")
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"), default="default",
                   help="tf.distribute strategy; multi-worker reads the cluster from TF_CONFIG")
    p.add_argument("--backup-every", type=int, default=100,
                   help="batches between mid-epoch backups a killed job resumes from (0: off)")
    p.set_defaults(func=_train)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="metrics of a trained model or an exported SavedModel")
    p.add_argument("--model-dir")
    p.add_argument("--saved-model")
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=("eval", "train", "judged", "all", "default"), default="default",
                   help="default: eval and judged")
    p.add_argument("--output", help="metrics.json path (default: beside the model)")
    p.set_defaults(func=_evaluate)


def _add_export(sub):
    p = sub.add_parser("export", help="SavedModel of the relevance tower for TF Serving")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--export-base", required=True, help="writes BASE/<next integer version>/")
    p.set_defaults(func=_export)


def _add_validate(sub):
    p = sub.add_parser("validate", help="model-validation gate: candidate vs baseline")
    p.add_argument("--candidate", required=True, help="exported SavedModel version folder")
    p.add_argument("--baseline", help="last blessed SavedModel (optional on a first run)")
    p.add_argument("--data", required=True)
    p.add_argument("--min-ndcg", type=float, default=0.5)
    p.add_argument("--max-regression", type=float, default=0.01)
    p.set_defaults(func=_validate)


def _add_run(sub):
    p = sub.add_parser("run", help="simulate → preprocess → train → evaluate → export → validate")
    p.add_argument("--workdir", default="work")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    p.add_argument("--num-queries", type=int, default=400, help="logged queries of the world")
    p.add_argument("--sessions-per-query", type=int, default=50)
    p.add_argument("--logging-quality", type=float, default=0.2,
                   help="0 random … 1 perfect; low values make the old ranker's errors matter")
    p.add_argument("--min-ndcg", type=float, default=0.5, help="the validation gate's floor")
    p.set_defaults(func=_run)


def _add_ablation(sub):
    p = sub.add_parser("ablation", help="train variants over seeds; report.md, report.json, plots")
    p.add_argument("--data", required=True)
    p.add_argument("--variants", default="naive,position-feature,additive,pal,oracle")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--output", required=True)
    p.set_defaults(func=_ablation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for add in (_add_simulate, _add_preprocess, _add_train, _add_evaluate, _add_export,
                _add_validate, _add_run, _add_ablation):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam_passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result = args.func(args, extra)
    except RankerError as err:
        print(f"ranker {args.verb}: error: {err}", file=sys.stderr)
        return 2
    code = 0
    if isinstance(result, tuple):
        result, code = result
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
