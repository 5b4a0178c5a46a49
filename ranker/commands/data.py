"""`ranker simulate` and `ranker preprocess`: the simulator's and the Beam job's flags."""
from __future__ import annotations

from ranker.commands import default, options, verb_parser
from ranker.pipeline.options import LOCAL_PARALLEL_MIB, PreprocessOptions
from ranker.simulation.options import SimulateOptions


def _simulate(args, beam_args):
    from ranker.simulation import simulate

    return simulate.simulate(options(SimulateOptions, args,
                                     devices=tuple(d for d in args.devices.split(",") if d)))


def _preprocess(args, beam_args):
    from ranker.pipeline import preprocess

    stats = preprocess.preprocess(options(PreprocessOptions, args, beam_args=tuple(beam_args)))
    # a summary: the full stats (CTR keys in position order) are in stats.json
    return {key: stats[key] for key in ("lines_read", "impressions_valid", "truncated_impressions",
                                        "lists_truncated", "dead_letter", "requests", "seconds")}


def add_simulate(sub):
    from ranker.simulation import options as so

    p = verb_parser(sub, "simulate", "write impression logs with position-biased clicks")
    p.add_argument("--world", choices=so.WORLDS, default=default(SimulateOptions, "world"),
                   help="synthetic: feature-rich items; letor: lists of an SVMlight file; ids: a "
                        "search log of query ids and doc ids only (with a query × doc cross)")
    p.add_argument("--letor-train", help="SVMlight file (qid: lines, or a .query group file beside it)")
    p.add_argument("--letor-test", help="SVMlight file whose lists become judged lists")
    add_world_size(p, SimulateOptions)
    add_world_knobs(p)
    p.add_argument("--examine-all", action="store_true",
                   help="every shown item is examined and clicks are independent given "
                        "attractiveness under every click model (no cascade stop, no trust bias, "
                        "top examination 1): unbiased clicks of the same sessions, a reference")
    p.add_argument("--oracle-lists", action="store_true",
                   help="also write OUTPUT/oracle/: full candidate lists of the logged queries with "
                        "true grades (each candidate once), spec and truth, for an oracle to train on")
    p.add_argument("--seed", type=int, default=default(SimulateOptions, "seed"),
                   help="same seed and flags, byte-identical files")
    p.add_argument("--output", required=True, help="folder for logs, feature_spec.json, truth.json")
    p.set_defaults(func=_simulate)


def add_world_size(p, options) -> None:
    """--num-queries, --sessions-per-query and --logging-quality, with the defaults of `options`
    (SimulateOptions or RunOptions: `run` simulates a larger world than `simulate`'s default)."""
    p.add_argument("--num-queries", type=int, default=default(options, "num_queries"),
                   help="synthetic and ids worlds: logged queries")
    p.add_argument("--sessions-per-query", type=int, default=default(options, "sessions_per_query"),
                   help="sessions simulated per logged query")
    p.add_argument("--logging-quality", type=float, default=default(options, "logging_quality"),
                   help="0 random … 1 perfect; low values make the old ranker's errors matter")


def add_world_knobs(p):
    """Simulator knobs shared by `simulate` and `run` (defaults: options.RUN_KNOB_DEFAULTS)."""
    from ranker.simulation import options as so

    defaults = so.RUN_KNOB_DEFAULTS
    p.add_argument("--click-model", choices=so.CLICK_MODELS, default=defaults["click_model"],
                   help="pbm: examination by position; cascade: scan down, stop after a click")
    p.add_argument("--devices", default=defaults["devices"],
                   help="comma-separated name[:share[:eta]]: traffic share and examination "
                        "(1/k)^eta per device, shares renormalised (e.g. "
                        "ios:0.5:1.2,android:0.3:0.9,web:0.2:0.5); plain names keep their defaults "
                        "(desktop 0.5/0.5, mobile 0.35/1.5, tablet 0.15/1.0), other plain names get "
                        "an equal share and eta 1")
    p.add_argument("--examination-curve", default=defaults["examination_curve"], metavar="PATH",
                   help="JSON {device: [e1, e2, …]}: explicit examination probabilities per position "
                        f"(at least {so.NUM_SHOWN}, in (0, 1]) replacing the (1/k)^eta curve of the "
                        "devices it names, used as given")
    p.add_argument("--top-examination", type=float, default=defaults["top_examination"],
                   help="position-1 examination P in (0, 1]: the curve becomes P·(1/k)^eta")
    p.add_argument("--trust-bias", type=float, default=defaults["trust_bias"],
                   help=f"T in [0, {so.MAX_TRUST_BIAS:g}]: click noise on examined items falls with position k, "
                        f"eps_k = {so.CLICK_NOISE}·(1 + T/k) (Agarwal et al. 2019); 0 = off")
    p.add_argument("--num-judged", type=int, default=defaults["num_judged"],
                   help="synthetic and ids worlds: judged queries, None = 25%% of --num-queries "
                        "(the ids world judges the full lists of logged queries)")


def add_preprocess(sub):
    p = verb_parser(
        sub, "preprocess", "the Beam job: logs → ELWC TFRecords, vocabularies, stats",
        description="Unknown flags pass through to Beam: --runner (default FnApiRunner; "
                    "DataflowRunner, FlinkRunner, SparkRunner, DaskRunner with "
                    "--dask_client_address tcp://HOST:8786, ranker[dask]), "
                    f"--direct_num_workers (default: 1 in process, or a worker process per core "
                    f"for logs of {LOCAL_PARALLEL_MIB} MiB raw or more), --project, --temp_location, …")
    p.add_argument("--input", required=True,
                   help="a file, a folder or a glob (** crosses folders) of .jsonl, .jsonl.gz or "
                        ".parquet logs; local, gs:// (ranker[gcp]) or s3:// (ranker[aws])")
    p.add_argument("--output", required=True,
                   help="output folder, replaced only when the run succeeds; not the input folder")
    p.add_argument("--feature-spec", help="default: feature_spec.json beside the logs")
    p.add_argument("--max-dead-letter-fraction", type=float,
                   default=default(PreprocessOptions, "max_dead_letter_fraction"),
                   help="fail (exit 2, output unchanged) when more of the lines are dead-lettered "
                        "")
    p.set_defaults(func=_preprocess, beam_passthrough=True)
