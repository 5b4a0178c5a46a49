"""`ranker <verb>`: argument parsing only; each verb calls one function of the package.

Heavy imports (TensorFlow, Beam) happen inside the verb that needs them so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from ranker import __version__, logs
from ranker.commands import data, models, serving, workflows
from ranker.errors import RankerError

ADD_VERBS = (data.add_simulate, data.add_preprocess, models.add_train, models.add_evaluate,
             serving.add_export, serving.add_validate, workflows.add_run, workflows.add_ablation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", dest="verbosity", action="store_const",
                           const=logs.VERBOSE, default=logs.DEFAULT,
                           help="also show TensorFlow's and Beam's own logs")
    verbosity.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=logs.QUIET,
                           help="warnings and errors only")
    sub = parser.add_subparsers(dest="verb", required=True)
    for add in ADD_VERBS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam_passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logs.setup(args.verbosity)
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
