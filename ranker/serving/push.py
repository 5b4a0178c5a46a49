"""Pushing a blessed version into the base TF Serving polls (TFX's Pusher, in one function).

TF Serving serves the highest version of its base, blessed or not; so candidates are exported to
a staging base, validated there, and only a blessed one is copied into the serving base, under
the next version number and through a temporary folder and a rename, never half-written. The
candidate's BLESSED verdict must carry the fingerprint of the SavedModel beside it (verdict.py), and
the copy is checked against it again before the rename.
"""
from __future__ import annotations

import uuid

from ranker import storage
from ranker.errors import RankerError
from ranker.serving import verdict
from ranker.serving.base_files import write_base_files
from ranker.serving.publish import TMP_PREFIX, claim_version, versions


def last_pushed(serving_base: str) -> str | None:
    """The newest version in the serving base: the baseline the next candidate must not regress."""
    found = versions(serving_base)
    return storage.join(serving_base, str(found[-1])) if found else None


def push(candidate: str, serving_base: str) -> dict:
    judged = verdict.check_blessed(candidate)
    storage.makedirs(serving_base)
    tmp_dir = storage.join(serving_base, f"{TMP_PREFIX}push-{uuid.uuid4().hex[:12]}")
    try:
        storage.copy_tree(candidate, tmp_dir, skip=(verdict.NOT_BLESSED,))
        if verdict.fingerprint(tmp_dir) != judged[verdict.FINGERPRINT_KEY]:
            raise RankerError(f"{candidate} changed while it was being pushed; nothing was pushed")
        version, target = claim_version(tmp_dir, serving_base)
    finally:
        storage.rmtree(tmp_dir)
    config_path, _ = write_base_files(serving_base)
    return {"pushed": storage.absolute(target), "version": version, "from": storage.absolute(candidate),
            "models_config": config_path}
