"""The validation verdict written into a version folder, and the fingerprint that ties it to one model.

`BLESSED` / `NOT_BLESSED` are JSON files (TF Serving ignores them). The verdict records a fingerprint
of the SavedModel it judged: SHA-256 of a `sha256sum`-style manifest ("<sha256>  <path>" lines,
sorted by path) of `saved_model.pb` and every file under `variables/` and `assets/`. `push` and the
serving image (`select_blessed.sh`, which computes the same manifest with coreutils) accept a version
only when its verdict's fingerprint matches the files beside it.
"""
from __future__ import annotations

import hashlib
import os

from ranker import storage
from ranker.artifacts import SAVED_MODEL_FILE, read_json, saved_model_file, write_json
from ranker.errors import RankerError

BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"
FINGERPRINT_KEY = "fingerprint"
FINGERPRINT_PATHS = (SAVED_MODEL_FILE, "variables", "assets")  # what decides the served scores


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with storage.open_file(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(version_dir: str) -> str:
    """SHA-256 of the sorted `sha256sum` manifest of the files that make up the SavedModel."""
    saved_model_file(version_dir)
    files = [rel for rel in storage.files_under(version_dir)
             if rel in FINGERPRINT_PATHS or rel.split("/", 1)[0] in FINGERPRINT_PATHS[1:]]
    manifest = "".join(f"{_sha256(os.path.join(version_dir, rel))}  {rel}\n" for rel in sorted(files))
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def remove_verdicts(version_dir: str) -> None:
    """Removes BLESSED and NOT_BLESSED: called before a (re-)validation starts."""
    for name in (BLESSED, NOT_BLESSED):
        storage.remove(os.path.join(version_dir, name))


def write_verdict(version_dir: str, result: dict) -> str:
    """Writes `result` (with the fingerprint) as BLESSED or NOT_BLESSED; returns the path."""
    return write_json(os.path.join(version_dir, BLESSED if result["blessed"] else NOT_BLESSED), result)


def check_blessed(version_dir: str) -> dict:
    """The BLESSED verdict of `version_dir`; RankerError unless it exists, says blessed and was
    written for exactly the SavedModel now in the folder."""
    path = os.path.join(version_dir, BLESSED)
    verdict = read_json(path)  # None: no such file; RankerError: not JSON
    if verdict is None:
        raise RankerError(f"{version_dir}: not blessed; run `ranker validate` first")
    if not isinstance(verdict, dict) or verdict.get("blessed") is not True:
        raise RankerError(f"{path}: the verdict does not say blessed; re-run `ranker validate`")
    if verdict.get(FINGERPRINT_KEY) != fingerprint(version_dir):
        raise RankerError(f"{path} was written for another model (fingerprint mismatch: the SavedModel"
                          " changed after validation); re-run `ranker validate`")
    return verdict
