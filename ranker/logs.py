"""One logging set-up for every verb: progress on stderr, quiet third-party libraries.

Default: the ranker's own INFO messages (progress) and warnings of everything else; `-v` shows the
libraries' INFO too (TensorFlow's C++ logs, Beam's), `-q` only warnings. TensorFlow's C++ start-up
noise ("Unable to register cuDNN factory …") is hidden unless `-v`, through TF_CPP_MIN_LOG_LEVEL,
which must be set before TensorFlow is imported.
"""
from __future__ import annotations

import logging
import os

QUIET, DEFAULT, VERBOSE = -1, 0, 1
# Beam warns on the root logger at import when its optional GCP client is absent: not our user's concern
_DROPPED = ("apitools not found",)


def _keep(record: logging.LogRecord) -> bool:
    return not any(text in str(record.msg) for text in _DROPPED)
_NOISY = ("tensorflow", "absl", "apache_beam", "h5py", "matplotlib", "urllib3", "botocore")


def setup(verbosity: int = DEFAULT) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbosity >= VERBOSE else "3")
    own = logging.WARNING if verbosity <= QUIET else logging.DEBUG if verbosity >= VERBOSE else logging.INFO
    logging.basicConfig(format="%(name)s: %(message)s", level=logging.WARNING, force=True)
    if verbosity < VERBOSE:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_keep)
    logging.getLogger("ranker").setLevel(own)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.INFO if verbosity >= VERBOSE else logging.ERROR)
