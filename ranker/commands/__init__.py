"""One module per group of verbs: each adds its parsers and holds the thin handlers."""
from __future__ import annotations

import argparse
import dataclasses

# Flags that steer the CLI itself, never a parameter of the function a verb calls.
_CLI_ONLY = frozenset({"func", "verb", "verbosity", "beam_passthrough"})
# Flag names the package spells differently (one vocabulary for every verb).
RENAMES = {"data": "data_dir", "output": "output_dir", "input": "input_pattern",
           "feature_spec": "feature_spec_path"}


def verb_parser(sub, verb: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A verb's parser; its --help shows every flag's default."""
    return sub.add_parser(verb, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)


def flags(args: argparse.Namespace, names) -> dict:
    """The parsed flags among `names`, each under its package name (RENAMES)."""
    out = {}
    for flag, value in vars(args).items():
        name = RENAMES.get(flag, flag)
        if name not in names and flag in names:  # e.g. evaluate's --output is a file
            name = flag
        if flag not in _CLI_ONLY and name in names:
            out[name] = value
    return out


def options(cls, args: argparse.Namespace, **given):
    """The verb's options dataclass from the parsed flags that name its fields; `given` adds or
    overrides values (flags the CLI parses from text first)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**flags(args, names), **given})


def default(cls, name: str):
    """A field's default in the verb's options dataclass: the one place it is spelled."""
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]
