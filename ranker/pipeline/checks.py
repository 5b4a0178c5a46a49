"""Driver-side checks of preprocess's inputs, before any worker starts: the feature spec and
every log file (readable, not empty, a gzip read through), each failure one RankerError line."""
from __future__ import annotations

import gzip
import zlib
from typing import Sequence

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline import paths
from ranker.pipeline.read import log_format

_MAX_FILE_NAME_BYTES = 255  # vocab/<feature>.txt must be a legal file name


def load_spec(path: str) -> fs.FeatureSpec:
    """The feature spec, read through FileSystems; names must be usable as vocabulary files."""
    paths.check_filesystem(path, "--feature-spec")
    try:
        spec = fs.load_spec(path, paths.read_bytes, FileSystems.exists, base_dir=paths.parent(path))
    except (OSError, BeamIOError) as err:
        raise fs.SpecError(f"{path}: cannot read the feature spec ({_reason(err)})") from None
    for feature in spec.features:
        name = feature.name
        file_name = f"{name}.txt".encode("utf-8", errors="surrogateescape")
        if feature.uses_vocabulary and (len(file_name) > _MAX_FILE_NAME_BYTES or name in (".", "..")
                                        or any(c in name for c in "/\\\0")):
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise fs.SpecError(f"{path}: feature name {shown!r} cannot name its vocabulary file "
                               f"vocab/<name>.txt (at most {_MAX_FILE_NAME_BYTES - 4} bytes, "
                               "no slashes)")
    return spec


def check_inputs(files: Sequence[str]) -> int:
    """Opens every file (reads every gzip through: a truncated one would fail a worker late) and
    rejects empty input. Returns the number of non-empty files; a RankerError names the first
    bad file and says what is wrong with it (unreadable, truncated, corrupt)."""
    non_empty = 0
    for path in files:
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
                fmt = log_format(path)
                if fmt == "gzip":
                    non_empty += _check_gzip(fh, path)
                elif fmt == "parquet":
                    non_empty += _check_parquet(fh, path)
                else:
                    non_empty += bool(fh.read(1))
        except (OSError, BeamIOError) as err:  # after the format checks, which raise RankerError
            raise RankerError(f"{path}: cannot read ({_reason(err)})") from None
    if not non_empty:
        names = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
        raise RankerError(f"{names}: empty input, no lines to preprocess")
    return non_empty


def _check_gzip(fh, path: str) -> bool:
    """True when the file decompresses to at least one byte; RankerError when it is damaged."""
    any_data = False
    stream = gzip.GzipFile(fileobj=fh, mode="rb")
    try:
        while stream.read(1 << 22):
            any_data = True
    except EOFError:
        raise RankerError(f"{path}: truncated gzip (ends before its end-of-stream marker)") \
            from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise RankerError(f"{path}: corrupt gzip ({err})") from None
    return any_data


def _check_parquet(fh, path: str) -> bool:
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(fh).metadata.num_rows > 0
    except OSError:
        raise
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RankerError(f"{path}: unreadable Parquet ({str(err).splitlines()[0]})") from None


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
