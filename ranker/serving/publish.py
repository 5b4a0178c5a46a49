"""Publishing a finished version folder as BASE/<version>/ so TF Serving never loads half of it.

A version is first written complete into BASE/.tmp-<random>/ (not an integer name: TF Serving's
version poller skips it), then published:

- local disk: one `os.rename` of the folder, atomic; it fails when the version folder exists, so
  two concurrent exports never share a version (the loser takes the next number);
- object storage (gs://, s3://): there is no atomic rename of a prefix, so every file is copied to
  BASE/<version>/ with `saved_model.pb` copied LAST, then the temporary prefix is deleted. TF
  Serving's loader needs saved_model.pb, so a server that finds it finds every other file of the
  version (variables, assets, warmup requests) already complete; one that polls mid-copy fails
  that load attempt for want of saved_model.pb and tries again later (tensorflow_model_server's
  --max_num_load_retries / --load_retry_interval_micros). Two exports racing for one version
  number on object storage are not excluded (there is no create-if-absent across a prefix): run
  one export per base at a time there.
"""
from __future__ import annotations

import logging

from ranker import storage
from ranker.artifacts import SAVED_MODEL_FILE
from ranker.errors import RankerError

logger = logging.getLogger(__name__)
TMP_PREFIX = ".tmp-"  # not an integer: TF Serving's version poller skips it
CLAIM_TRIES = 20


def versions(export_base: str) -> list[int]:
    """The integer version folders of BASE, ascending."""
    return sorted(int(n) for n in storage.listdir(export_base)
                  if n.isdigit() and storage.isdir(storage.join(export_base, n)))


def next_version(export_base: str) -> int:
    found = versions(export_base)
    return found[-1] + 1 if found else 1


def claim_version(tmp_dir: str, export_base: str) -> tuple[int, str]:
    """Publishes tmp_dir as the next free version; retries if a concurrent export took it."""
    for _ in range(CLAIM_TRIES):
        version = next_version(export_base)
        target = storage.join(export_base, str(version))
        if storage.is_url(export_base):
            if storage.exists(target):
                continue
            copy_version(tmp_dir, target)
            storage.rmtree(tmp_dir)
            return version, target
        try:
            storage.rename(tmp_dir, target)  # fails if target exists (non-empty) or was just created
            return version, target
        except OSError:
            if not storage.exists(target):
                raise
    raise RankerError(f"{export_base}: could not claim a version folder")


def copy_version(source: str, target: str) -> None:
    """Copies every file of `source` under `target`, saved_model.pb last (see the module doc)."""
    files = storage.files_under(source)
    if SAVED_MODEL_FILE not in files:
        raise RankerError(f"{source}: no {SAVED_MODEL_FILE}; nothing to publish")
    files.remove(SAVED_MODEL_FILE)
    for rel in files + [SAVED_MODEL_FILE]:
        destination = storage.join(target, rel)
        if not storage.is_url(destination):
            storage.makedirs(storage.parent(destination))
        storage.copy(storage.join(source, rel), destination)
    logger.info("published %d files to %s (%s last)", len(files) + 1, target, SAVED_MODEL_FILE)
