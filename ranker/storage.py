"""Files and folders of training, evaluation, export and validation: local disk or object storage.

A path is local, or a URL (`gs://bucket/…`, `s3://bucket/…`). Local paths go through os/shutil as
before (nothing heavy is imported); URLs go through `tf.io.gfile`, TensorFlow being imported only
then. TensorFlow 2.15 reads gs:// itself (tensorflow-io-gcs-filesystem); s3:// needs the
tensorflow-io package, imported here the first time an s3:// path is used (`register_filesystem`),
which registers the file system for every TF op of the process (TFRecordDataset, checkpoints,
SavedModel). The S3 client reads the usual AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION) and, for an S3-compatible server, S3_ENDPOINT (host:port or http://host:port),
S3_USE_HTTPS=0 and S3_VERIFY_SSL=0.

Object stores have no folders: a "folder" is a prefix with objects under it, `makedirs` is a no-op
there and a rename copies then deletes each object (not atomic: export.py publishes versions in an
order that TF Serving never sees half of).

The preprocess driver (Beam) uses Beam's FileSystems instead: ranker/pipeline/paths.py.
"""
from __future__ import annotations

import glob as _glob
import os
import re
import shutil

from ranker.errors import RankerError

# The pip package (and the ranker extra installing it) that gives TensorFlow each URL scheme
_TF_PLUGIN = {"s3": ("tensorflow_io", "aws")}
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_registered: set[str] = set()


def scheme(path: str) -> str | None:
    """'gs', 's3', … for a URL; None for a local path."""
    match = _URL.match(str(path))
    return match.group(1).lower() if match else None


def is_url(path: str) -> bool:
    return scheme(path) is not None


def absolute(path: str) -> str:
    """A local path made absolute (`~` expanded); a URL as it is, less a trailing slash.
    (os.path.abspath would turn `s3://b/x` into `/cwd/s3:/b/x`.)"""
    if is_url(path):
        register_filesystem(path)
        return path.rstrip("/") if not path.endswith("://") else path
    return os.path.abspath(os.path.expanduser(path))


def register_filesystem(path: str) -> None:
    """Makes TensorFlow able to read and write `path`'s scheme (imports its plugin once);
    RankerError naming the pip extra when the plugin is not installed."""
    found = scheme(path)
    if found is None or found in _registered:
        return
    if found in _TF_PLUGIN:
        module, extra = _TF_PLUGIN[found]
        try:
            __import__(module)
        except ImportError:
            raise RankerError(f"{path}: TensorFlow has no file system for {found}:// here; install "
                              f"it with: pip install 'ranker[{extra}]'") from None
    _registered.add(found)


def _gfile(path: str):
    register_filesystem(path)
    import tensorflow as tf
    return tf.io.gfile


def join(base: str, *names: str) -> str:
    return os.path.join(base, *names)  # correct for URLs too: "s3://b/x" + "y" → "s3://b/x/y"


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if is_url(path) else os.path.dirname(path)


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(path)


def exists(path: str) -> bool:
    return _gfile(path).exists(path) if is_url(path) else os.path.lexists(path)


def isdir(path: str) -> bool:
    """A local folder (not a link to one), or a prefix with objects under it."""
    if is_url(path):
        return _gfile(path).isdir(path)
    return os.path.isdir(path) and not os.path.islink(path)


def isfile(path: str) -> bool:
    if is_url(path):
        return exists(path) and not isdir(path)
    return os.path.isfile(path)


def makedirs(path: str) -> None:
    if is_url(path):
        _gfile(path).makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names directly in a folder (no trailing slashes); [] when it does not exist."""
    if not isdir(path):
        return []
    if is_url(path):
        return sorted({n.rstrip("/") for n in _gfile(path).listdir(path)})
    return sorted(os.listdir(path))


def glob(pattern: str) -> list[str]:
    """Sorted matches of a glob (`*`, `?`, `[…]` within one folder level)."""
    if is_url(pattern):
        return sorted(_gfile(pattern).glob(pattern))
    return sorted(_glob.glob(pattern))


def open_file(path: str, mode: str = "r", errors: str = "strict"):
    """A file object for reading or writing (`r`, `rb`, `w`, `wb`); text is UTF-8 (`errors`:
    how local files treat bad bytes; gfile's text mode is always strict)."""
    if is_url(path):
        return _gfile(path).GFile(path, mode)
    return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8", "errors": errors}))


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as fh:
        return fh.read()


def remove(path: str) -> None:
    """Deletes a file (a local link itself); nothing when absent."""
    if is_url(path):
        if _gfile(path).exists(path):
            _gfile(path).remove(path)
    elif os.path.lexists(path):
        os.remove(path)


def rmtree(path: str) -> None:
    """Deletes a folder and everything under it (a file or a local link: just it); nothing when
    absent."""
    if is_url(path):
        if isdir(path):
            _gfile(path).rmtree(path)
        else:
            remove(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        remove(path)


def copy(source: str, target: str) -> None:
    """Copies one file, replacing `target`."""
    if is_url(source) or is_url(target):
        _gfile(source if is_url(source) else target).copy(source, target, overwrite=True)
    else:
        shutil.copyfile(source, target)


def rename(source: str, target: str, overwrite: bool = False) -> None:
    """Moves one file (local: atomic, os.rename/replace; object storage: copy then delete)."""
    if is_url(source) or is_url(target):
        _gfile(source if is_url(source) else target).rename(source, target, overwrite=overwrite)
    elif overwrite:
        os.replace(source, target)
    else:
        os.rename(source, target)


def copy_tree(source: str, target: str, skip: tuple[str, ...] = ()) -> None:
    """Copies every file under `source` to the same place under `target`, but files named in
    `skip` (at any depth)."""
    for rel in files_under(source):
        if rel.rsplit("/", 1)[-1] in skip:
            continue
        destination = join(target, rel)
        if not is_url(destination):
            makedirs(os.path.dirname(destination))
        copy(join(source, rel), destination)


def files_under(folder: str) -> list[str]:
    """Every file under `folder`, as sorted paths relative to it (`variables/variables.index`)."""
    if is_url(folder):
        prefix = folder.rstrip("/") + "/"
        return sorted(join(root.rstrip("/"), n)[len(prefix):]
                      for root, _, names in _gfile(folder).walk(prefix) for n in names)
    return sorted(os.path.relpath(os.path.join(root, n), folder).replace(os.sep, "/")
                  for root, _, names in os.walk(folder) for n in names)
