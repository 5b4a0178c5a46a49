"""Pushing a blessed version into the base TF Serving polls (TFX's Pusher, in one function).

TF Serving serves the highest version of its base, blessed or not; so candidates are exported to
a staging base, validated there, and only a blessed one is copied into the serving base, under
the next version number and through a temporary folder and a rename, never half-written. The
candidate's BLESSED verdict must carry the fingerprint of the SavedModel beside it (verdict.py), and
the copy is checked against it again before the rename.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from ranker.errors import RankerError
from ranker.serving import export, verdict


def last_pushed(serving_base: str) -> str | None:
    """The newest version in the serving base: the baseline the next candidate must not regress."""
    found = export.versions(serving_base)
    return os.path.join(serving_base, str(found[-1])) if found else None


def push(candidate: str, serving_base: str) -> dict:
    judged = verdict.check_blessed(candidate)
    os.makedirs(serving_base, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=export.TMP_PREFIX + "push-", dir=serving_base)
    try:
        os.rmdir(tmp_dir)
        shutil.copytree(candidate, tmp_dir, ignore=shutil.ignore_patterns(verdict.NOT_BLESSED))
        if verdict.fingerprint(tmp_dir) != judged[verdict.FINGERPRINT_KEY]:
            raise RankerError(f"{candidate} changed while it was being pushed; nothing was pushed")
        version, target = export.claim_version(tmp_dir, serving_base)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    config_path, _ = export.write_base_files(serving_base)
    return {"pushed": os.path.abspath(target), "version": version, "from": os.path.abspath(candidate),
            "models_config": config_path}
