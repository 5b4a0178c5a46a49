"""One module per group of verbs: each adds its parsers and holds the thin handlers."""
from __future__ import annotations

import argparse
import inspect

# Flags that steer the CLI itself, never a parameter of the function a verb calls.
_CLI_ONLY = frozenset({"func", "verb", "verbosity", "beam_passthrough"})
# Flag names the package spells differently (one vocabulary for every verb).
RENAMES = {"data": "data_dir", "output": "output_dir", "input": "input_pattern",
           "feature_spec": "feature_spec_path"}


def verb_parser(sub, verb: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A verb's parser; its --help shows every flag's default."""
    return sub.add_parser(verb, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)


def call(fn, args: argparse.Namespace, **given):
    """fn(**flags): each parsed flag under its package name, when fn takes it (every flag when fn
    takes **options); `given` adds or overrides values."""
    params = inspect.signature(fn).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {}
    for flag, value in vars(args).items():
        name = RENAMES.get(flag, flag)
        if name not in params and flag in params:
            name = flag
        if flag not in _CLI_ONLY and (name in params or open_ended):
            kwargs[name] = value
    return fn(**{**kwargs, **given})
