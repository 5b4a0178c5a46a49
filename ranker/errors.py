"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class RankerError(Exception):
    """Bad input (a missing file, an empty log, a malformed spec): a one-line reason, no traceback."""
