"""Defaults of `ranker preprocess` flags, importable without Beam (the CLI's --help stays fast)."""

DEFAULT_MAX_DEAD_LETTER_FRACTION = 0.1  # the job fails (exit 2) above this share of lines
