"""What every stage's workers share: the counter namespace, progress lines, the GC freeze and the
dict-merging CombineFn base.

Kept apart from the stages so that reading, parsing/grouping and writing can all use it without
importing each other.
"""
from __future__ import annotations

import gc
import logging

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

NAMESPACE = "ranker.preprocess"  # every Beam counter of the job
PROGRESS_EVERY = 250_000  # lines read / impressions written between progress lines on stderr

logger = logging.getLogger("ranker.pipeline.preprocess")


def progress(message: str) -> None:
    """A progress line through `logging` (ranker.logs shows it on stderr)."""
    logger.info(message)



_FROZEN_AFTER: set[str] = set()


def freeze_heap(after: str) -> None:
    """Moves every object alive now (TensorFlow, Beam, the spec) out of the GC's reach.

    The job allocates millions of short-lived dicts; each full collection would otherwise walk
    the ~1M objects that importing TensorFlow leaves behind (measured: GC time 1.4 s → 0.6 s
    on 100k impressions, about 5% of the job).
    Called from DoFn.setup once the worker has imported what it needs; `after` names that
    import, so a process freezes (after a collection) at most once per import.
    """
    if after in _FROZEN_AFTER:
        return
    _FROZEN_AFTER.add(after)
    gc.collect()
    gc.freeze()


class BufferingDoFn(beam.DoFn):
    """A DoFn that sums or collects elements within a bundle and emits them from `_flush()`:
    when `process` decides its buffer is full, and for what is left at the bundle's end (in the
    global window, as finish_bundle outputs must be)."""

    def _flush(self):
        raise NotImplementedError

    def finish_bundle(self):
        for out in self._flush():
            yield GlobalWindows.windowed_value(out)


class MergeDicts(beam.CombineFn):
    """A CombineFn whose accumulator is a dict that `add_input` folds one partial dict into;
    merging folds the accumulators the same way. Subclasses define `add_input` only."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, partial):
        raise NotImplementedError

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator
