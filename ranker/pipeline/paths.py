"""Every path of the preprocess driver goes through Beam's FileSystems: local, gs://, s3:// alike.

    match_inputs(pattern)        → the log files, each matched once (never re-matched)
    check_filesystem(path, flag) → RankerError naming the pip extra when a scheme is not installed
    output_location(output, inputs) → normalised output; refuses a file or the input folder
    publish(staging, output, names) → replaces output's entries by staging's, then deletes staging

Object stores have no folders: a "folder" is a prefix, and moving one moves each file under it.
"""
from __future__ import annotations

import importlib
import os
import re

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ranker.errors import RankerError
from ranker.pipeline.read import log_format
from ranker.pipeline.runtime import progress

EXTRA_OF_SCHEME = {"gs": "gcp", "s3": "aws"}  # setup.py extras that install the file system
# What each file system imports only when first used (Beam registers s3:// without boto3).
_CLIENT_MODULE = {"gs": "google.cloud.storage", "s3": "boto3"}
_GLOB = re.compile(r"[*?\[]")


def scheme(path: str) -> str | None:
    """'gs', 's3', … for a remote path; None for a local one."""
    found = FileSystems.get_scheme(path)
    return None if found in (None, "file") else found


def is_local(path: str) -> bool:
    return scheme(path) is None


def check_filesystem(path: str, flag: str) -> None:
    """A one-line error when `path`'s scheme has no file system here (its pip extra is missing)."""
    found = scheme(path)
    if found is None:
        return
    try:
        FileSystems.get_filesystem(path)
        if found in _CLIENT_MODULE:
            importlib.import_module(_CLIENT_MODULE[found])
    except (ValueError, BeamIOError, ImportError):
        extra = EXTRA_OF_SCHEME.get(found)
        hint = (f"install it with: pip install 'ranker[{extra}]'" if extra
                else "install the Apache Beam file system for it")
        raise RankerError(f"{flag} {path}: no file system for {found}:// paths in this "
                          f"environment; {hint}") from None


def normalise(path: str) -> str:
    """Absolute for a local path (workers may run elsewhere), no trailing slash for a remote one."""
    if is_local(path):
        return os.path.abspath(os.path.expanduser(path))
    return path.rstrip("/")


def parent(path: str) -> str:
    return FileSystems.split(path)[0]


def join(base: str, *names: str) -> str:
    return FileSystems.join(base, *names)


def is_folder(path: str) -> bool:
    """A local directory, or a remote prefix with files under it and no file of its own name."""
    bare = path.rstrip("/")
    if is_local(path):
        return FileSystems.exists(bare + "/") if bare else True
    return not FileSystems.exists(bare) and bool(_match(bare + "/**"))


def _match(pattern: str) -> list[str]:
    try:
        return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except BeamIOError as err:
        raise RankerError(f"{pattern}: cannot list ({_first_error(err)})") from None


def match_inputs(pattern: str) -> list[str]:
    """Sorted log files of `pattern` (other files are skipped); RankerError when none.

    A path that exists as written is that file, even with glob characters in its name
    (`logs[1].jsonl`); a folder means every log directly in it; anything else is a glob (`**`
    crosses folders; symlinked folders are not followed, so a link loop cannot repeat a file).
    """
    if not pattern:
        raise RankerError("--input: give a glob of .jsonl, .jsonl.gz or .parquet logs")
    check_filesystem(pattern, "--input")
    expanded = normalise(pattern)
    if is_folder(expanded):
        files = _match(join(expanded, "*"))
    elif FileSystems.exists(expanded):
        files = [expanded]
    else:
        files = _match(expanded)
    files = _distinct_files(files)
    if not files:
        raise RankerError(f"{pattern}: no file matches" if _GLOB.search(pattern)
                          else f"{pattern}: no such file")
    logs = [p for p in files if log_format(p) is not None]
    if not logs:
        raise RankerError(f"{files[0]}: not an impression log (expected .jsonl, .jsonl.gz or "
                          f".parquet)")
    skipped = [p.rsplit("/", 1)[-1] for p in files if log_format(p) is None]
    if skipped:  # e.g. `--input 'DIR/*'` over a simulate folder also matches its JSON files
        progress(f"skipping {len(skipped)} matched file(s) that are not logs: "
                 f"{', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}")
    return logs


def _distinct_files(paths: list[str]) -> list[str]:
    """Sorted, each file once: a local file reached by two names (a link) is read once."""
    seen, out = set(), []
    for path in sorted(set(paths)):
        key = os.path.realpath(path) if is_local(path) else path
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def output_location(output: str, inputs: list[str]) -> str:
    """The normalised output folder; refuses a file, and the input folder or a folder inside it."""
    if not output:
        raise RankerError("--output: give a folder")
    check_filesystem(output, "--output")
    target = normalise(output)
    if FileSystems.exists(target) and not is_folder(target):
        raise RankerError(f"--output {output}: is a file, not a folder")
    for folder in sorted({parent(p) for p in inputs}):
        if target == folder or target.startswith(folder.rstrip("/") + "/"):
            raise RankerError(f"--output {output}: is (inside) the input folder {folder}; "
                              "write the output somewhere else, or the next run reads it as input")
    return target


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        return fh.read()


def delete_tree(path: str) -> None:
    """Deletes a file or a folder (every file under a remote prefix); nothing when absent."""
    if is_local(path) or FileSystems.exists(path):
        if FileSystems.exists(path):
            FileSystems.delete([path])
        return
    files = _match(path.rstrip("/") + "/**")
    if files:
        FileSystems.delete(files)


def move_tree(source: str, target: str) -> None:
    """Moves a file or folder to `target` (absent). Local: one rename; remote: file by file."""
    if is_local(source):
        FileSystems.rename([source], [target])
        return
    if FileSystems.exists(source):
        FileSystems.rename([source], [target])
        return
    files = _match(source.rstrip("/") + "/**")
    FileSystems.rename(files, [target.rstrip("/") + f[len(source.rstrip("/")):] for f in files])


def exists_entry(path: str) -> bool:
    return FileSystems.exists(path) or (not is_local(path) and bool(_match(path + "/**")))


def publish(staging: str, output: str, names: tuple[str, ...]) -> None:
    """Replaces output/<name> by staging/<name> for each name, then deletes staging.

    Old entries go aside first (into a sibling `.old` folder deleted at the end), so entries of
    `output` that preprocess does not write stay, and no stale shard mixes with new ones.
    """
    trash = staging + ".old"
    if is_local(output):  # local renames need the parent folders; object stores have none
        for folder in (output, trash):
            if not FileSystems.exists(folder):
                FileSystems.mkdirs(folder)
    for name in names:
        if exists_entry(join(output, name)):
            move_tree(join(output, name), join(trash, name))
    for name in names:
        if exists_entry(join(staging, name)):
            move_tree(join(staging, name), join(output, name))
    delete_tree(trash)
    delete_tree(staging)


def _first_error(err: BeamIOError) -> str:
    causes = getattr(err, "exception_details", None) or {}
    for cause in causes.values():
        return str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return str(err).splitlines()[0]
