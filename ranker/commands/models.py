"""`ranker train` and `ranker evaluate`: flags, defaults taken from ModelConfig, TrainOptions and
EvaluateOptions (models/options.py)."""
from __future__ import annotations

import dataclasses

from ranker.commands import default, flags, options, verb_parser
from ranker.errors import RankerError


def _train(args, beam_args):
    from ranker.models import train
    from ranker.models.config import ModelConfig
    from ranker.models.options import TrainOptions

    names = {f.name for f in dataclasses.fields(TrainOptions)} | {f.name for f in dataclasses.fields(ModelConfig)}
    given = flags(args, names)
    given["hidden_units"] = _hidden_units(args.hidden_units)
    return train.run(TrainOptions.of(**given))


def _hidden_units(text: str) -> tuple[int, ...]:
    """`--hidden-units 64,32` → (64, 32); ModelConfig checks they are positive."""
    try:
        return tuple(int(u) for u in text.split(","))
    except ValueError:
        raise RankerError(f"--hidden-units takes comma-separated integers, got {text!r}") from None


def _evaluate(args, beam_args):
    from ranker.models import evaluate
    from ranker.models.options import EvaluateOptions

    return evaluate.write_metrics(options(EvaluateOptions, args))


def _add_model_dir(p) -> None:
    p.add_argument("--model-dir", required=True,
                   help="folder for checkpoints, model_config.json, TensorBoard logs; an existing one is "
                        "resumed (with the same flags and data only; --epochs, --min-steps and --patience "
                        "may change)")
    p.add_argument("--restart", action="store_true",
                   help="delete the model dir's checkpoints, config, logs and metrics first and train afresh")


def add_train(sub):
    p = verb_parser(sub, "train", "train one model variant on preprocess output")
    p.add_argument("--data", required=True, help="preprocess output folder")
    _add_model_dir(p)
    from ranker.models import config as model_config  # light: no TensorFlow
    from ranker.models.options import CACHE_MODES, TrainOptions

    p.add_argument("--variant", choices=model_config.VARIANTS, default=default(TrainOptions, "variant"),
                   help="naive: clicks as labels; position-feature: position as an input (anti-pattern); "
                        "additive/pal: two towers; ips: inverse-propensity weights; dla: dual learning; "
                        "oracle: true grades")
    p.add_argument("--epochs", type=int, default=default(TrainOptions, "epochs"),
                   help="maximum epochs (%(default)s: clip(ceil(min_steps / steps per epoch), 3, 100))")
    p.add_argument("--min-steps", type=int, default=model_config.ModelConfig.min_steps,
                   help="without --epochs, plan at least this many optimizer steps")
    p.add_argument("--patience", type=int, default=model_config.ModelConfig.patience,
                   help="stop after this many epochs without a lower eval click log-loss and keep the "
                        "best epoch (0: train every epoch, keep the last)")
    p.add_argument("--batch-size", type=int, default=model_config.ModelConfig.batch_size,
                   help="lists per batch (at least 1)")
    p.add_argument("--seed", type=int, default=model_config.ModelConfig.seed,
                   help="seeds initialisation, shuffling and dropout")
    p.add_argument("--position-dropout", type=float, default=model_config.ModelConfig.position_dropout,
                   help="probability of replacing a position by 'unknown' in the bias tower")
    p.add_argument("--bias-dropout", type=float, default=model_config.ModelConfig.bias_dropout,
                   help="probability of zeroing the whole bias logit (Zhang et al. use 0.5)")
    p.add_argument("--loss", choices=model_config.LOSSES, default=default(TrainOptions, "loss"),
                   help="%(default)s: listwise for dla (its softmax losses), pointwise otherwise")
    p.add_argument("--learning-rate", type=float, default=model_config.ModelConfig.learning_rate,
                   help="peak rate of the relevance tower's Adam, in (0, 1]")
    p.add_argument("--bias-learning-rate", type=float, default=model_config.ModelConfig.bias_learning_rate,
                   help="peak rate of the bias tower's own Adam (pal, additive, dla), in (0, 1]")
    p.add_argument("--lr-schedule", choices=model_config.LR_SCHEDULES, default=model_config.ModelConfig.lr_schedule,
                   help="cosine: linear warm-up then cosine decay over the planned steps")
    p.add_argument("--split", default=model_config.ModelConfig.split,
                   help="split to train on; the oracle may train on `judged` (full candidate lists)")
    p.add_argument("--ips-clip", type=float, default=model_config.ModelConfig.ips_clip,
                   help="largest inverse-propensity weight of ips and dla")
    p.add_argument("--propensities", default=default(TrainOptions, "propensities"),
                   help="ips and pal: a JSON file {device: [p1, p2, ...]}, `harvested` (preprocess's"
                   " model-free estimate) or `truth` (truth.json); pal then fixes its examination to this"
                   " curve instead of learning a bias tower (%(default)s: ips reads truth.json, pal learns)")
    p.add_argument("--propensity-prior-weight", type=float,
                   default=model_config.ModelConfig.propensity_prior_weight,
                   help="pal: weight of the data's harvested examination curve as a prior on the bias "
                        "tower (0: none; no effect without propensity_harvested.json)")
    p.add_argument("--strategy", choices=model_config.STRATEGIES, default=default(TrainOptions, "strategy"),
                   help="tf.distribute strategy; multi-worker reads the cluster from TF_CONFIG")
    p.add_argument("--backup-every", type=int, default=default(TrainOptions, "backup_every"),
                   help="batches between mid-epoch backups a killed job resumes from (0: off)")
    p.add_argument("--input-cache", choices=CACHE_MODES, default=default(TrainOptions, "input_cache"),
                   help="auto: keep parsed batches in memory when they take at most half the free "
                        "memory, else stream them from the files every epoch")
    _add_tower_flags(p)
    p.set_defaults(func=_train)


def _add_tower_flags(p) -> None:
    from ranker.models import config as model_config

    tower = model_config.ModelConfig  # the relevance tower's sizes and number handling
    p.add_argument("--embedding-dim", type=int, default=tower.embedding_dim,
                   help="size of every FM field embedding")
    p.add_argument("--hidden-units", default=",".join(map(str, tower.hidden_units)),
                   help="relevance DNN layer sizes, comma-separated")
    p.add_argument("--dnn-dropout", type=float, default=tower.dnn_dropout,
                   help="dropout after each relevance DNN layer, in [0, 1)")
    p.add_argument("--dnn-norm", choices=model_config.DNN_NORMS, default=tower.dnn_norm,
                   help="normalisation of the relevance DNN's input")
    p.add_argument("--cross-l2", type=float, default=tower.cross_l2,
                   help="L2 penalty on the declared crosses' tables, in training impressions (a prior "
                        "shrinking a rarely seen pair toward its components; 0: none)")
    p.add_argument("--numeric-transform", choices=model_config.NUMERIC_TRANSFORMS,
                   default=tower.numeric_transform,
                   help="numbers and vector dimensions: signed log1p then standardise, or standardise "
                        "only; both clipped to ±5")


def add_evaluate(sub):
    from ranker.models import options as mo  # light: numpy only

    p = verb_parser(sub, "evaluate", "metrics of a trained model or an exported SavedModel")
    p.add_argument("--model-dir", help="a trained model dir (full click model: relevance and bias)")
    p.add_argument("--saved-model", help="an exported version folder (relevance tower only)")
    p.add_argument("--data", required=True, help="preprocess output to evaluate on")
    p.add_argument("--split", choices=mo.EVALUATE_SPLITS, default=default(mo.EvaluateOptions, "split"),
                   help=f"{mo.DEFAULT_SPLITS}: eval and judged; {mo.ALL_SPLITS}: every split")
    p.add_argument("--output", help="metrics.json path (%(default)s: beside the model)")
    p.add_argument("--propensities", default=default(mo.EvaluateOptions, "propensities"),
                   help="propensities of the IPS click metrics: auto (truth.json, else the harvested"
                   " estimate, else the model's bias tower), truth, harvested, model, or a JSON file"
                   " {device: [p1, p2, ...]}")
    p.add_argument("--ips-clip", type=float, default=default(mo.EvaluateOptions, "ips_clip"),
                   help="largest inverse-propensity weight of a click in the IPS metrics")
    p.set_defaults(func=_evaluate)
