"""Pushing a blessed version into the base TF Serving polls (TFX's Pusher, in one function).

TF Serving serves the highest version of its base, blessed or not; so candidates are exported to
a staging base, validated there, and only a blessed one is copied into the serving base, under
the next version number and through a temporary folder and a rename, never half-written.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from ranker.errors import RankerError
from ranker.serving import export
from ranker.serving.validate import BLESSED


def last_pushed(serving_base: str) -> str | None:
    """The newest version in the serving base: the baseline the next candidate must not regress."""
    found = export.versions(serving_base)
    return os.path.join(serving_base, str(found[-1])) if found else None


def push(candidate: str, serving_base: str) -> dict:
    if not os.path.exists(os.path.join(candidate, BLESSED)):
        raise RankerError(f"{candidate}: not blessed; run `ranker validate` first")
    os.makedirs(serving_base, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-push-", dir=serving_base)
    os.rmdir(tmp_dir)
    shutil.copytree(candidate, tmp_dir)
    version, target = export.claim_version(tmp_dir, serving_base)
    config_path, config_text = export.models_config(serving_base, export.model_name(serving_base))
    export.write_atomically(config_path, config_text)
    return {"pushed": os.path.abspath(target), "version": version, "from": os.path.abspath(candidate),
            "models_config": config_path}
