"""The driver's side of a `--runner DaskRunner` run (Beam's DaskRunner on a dask.distributed
cluster; the graph's side is portable.py).

    use_dask_runner(options, args)   → takes Beam's --dask_* flags (DaskOptions), resolves the name
    plan_partitions(options, files)  → (read tasks per file, shards per written output)
    close_client(result)             → closes the client DaskRunner opened

--dask_client_address tcp://HOST:8786 runs on that scheduler's workers; without it Beam's
DaskRunner calls dask.distributed.Client(), which starts a LocalCluster on this machine (worker
processes and threads sized by its cores) for the run. Every worker needs this package
installed (pip install 'ranker[dask]') and must see the input and output paths (a shared file
system, gs:// or s3://); workers keep the modules they imported, so restart them after an upgrade.
"""
from __future__ import annotations

import math
from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from ranker.errors import RankerError
from ranker.pipeline.portable import is_dask_runner

DASK_RUNNER_PATH = "apache_beam.runners.dask.dask_runner.DaskRunner"
DEFAULT_PARTITIONS = 8  # dask.bag partitions (read tasks, then shards) without --dask_npartitions
_FLAG_PREFIX = "--dask_"


def use_dask_runner(options: PipelineOptions, args: Sequence[str]) -> bool:
    """True when --runner names DaskRunner: then its flags are registered (so they are known
    options) and the runner name is the dotted path Beam can import. --dask_* flags with another
    runner are refused: nothing would honour them."""
    runner = options.view_as(StandardOptions).runner
    if not (runner and is_dask_runner(runner)):
        dask_flags = sorted({a.split("=", 1)[0] for a in args if a.startswith(_FLAG_PREFIX)})
        if dask_flags:
            raise RankerError(f"{', '.join(dask_flags)}: only with --runner DaskRunner")
        return False
    try:
        from apache_beam.runners.dask.dask_runner import DaskOptions  # noqa: F401  (registers)
        import dask.bag  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise RankerError("--runner DaskRunner needs Dask: pip install 'ranker[dask]'") from None
    options.view_as(StandardOptions).runner = DASK_RUNNER_PATH
    return True


def plan_partitions(options: PipelineOptions, files: Sequence[str]) -> tuple[int, int]:
    """(read tasks per file, shards of each written output) for a DaskRunner run.

    DaskRunner's bags keep the partitions its Create gave them (a Reshuffle moves nothing, and
    Beam's Create puts up to 128 elements in one partition), so the work spreads over workers only
    as far as the read tasks do: --dask_npartitions N (default DEFAULT_PARTITIONS, at least one
    per file) read tasks, each one partition; each reads its file and keeps every k-th chunk.
    With --dask_partition_size, Beam partitions the tasks (one per file) by that size.
    """
    from apache_beam.runners.dask.dask_runner import DaskOptions

    dask = options.view_as(DaskOptions)
    if dask.partition_size:
        return 1, max(1, len(files))
    wanted = dask.npartitions or max(DEFAULT_PARTITIONS, len(files))
    if wanted < 1:
        raise RankerError(f"--dask_npartitions must be ≥ 1, got {wanted}")
    per_file = max(1, math.ceil(wanted / len(files)))
    dask.npartitions = per_file * len(files)  # one read task per partition
    return per_file, dask.npartitions


def close_client(result) -> None:
    """Closes the dask.distributed client a DaskRunner run opened (it also stops the LocalCluster
    that Client() started when no --dask_client_address was given)."""
    client = getattr(result, "client", None)
    if client is not None:
        client.close()
