"""Every file, folder and split name the stages hand each other on disk, and the JSON helpers.

    simulate   OUT/impressions.jsonl.gz, judged.jsonl.gz, feature_spec.json, truth.json,
               summary.json, oracle/
    preprocess DIR/{train,eval,judged}/part-*.tfrecord.gz, vocab/, dead_letter/, stats.json,
               feature_spec.json, truth.json (copied from beside the logs),
               propensity_harvested.json
    train      MODEL_DIR/model_config.json, train_summary.json (checkpoint folders: checkpoints.py)
    evaluate   MODEL_DIR/metrics.json (or beside the SavedModel)
    export     BASE/<version>/saved_model.pb with the signatures below (serving/ owns the rest)

A module that reads or writes one of these imports its name from here. Light on purpose (no
TensorFlow, no Beam): Beam workers, the CLI and the models all import it. Paths may be URLs
(gs://, s3://): the helpers below go through ranker/storage.py (tf.io.gfile, imported only then).
"""
from __future__ import annotations

import json
import os
import uuid

from ranker import storage
from ranker.errors import RankerError

# --- simulate ------------------------------------------------------------------------------------
IMPRESSIONS_FILE = "impressions.jsonl.gz"
JUDGED_FILE = "judged.jsonl.gz"
LOG_GLOB = "*.jsonl.gz"  # both of the above: what `ranker preprocess --input` reads of a simulation
SUMMARY_FILE = "summary.json"
ORACLE_DIR = "oracle"
TRUTH_FILE = "truth.json"  # what generated the clicks; preprocess copies it into its output

# --- preprocess (and the feature spec beside the logs) -------------------------------------------
SPEC_FILENAME = "feature_spec.json"
VOCAB_DIR = "vocab"
STATS_FILE = "stats.json"
HARVESTED_FILE = "propensity_harvested.json"  # preprocess's model-free propensity estimate (harvest.py)
DEAD_LETTER_DIR = "dead_letter"  # also the Beam output tag and the stats key of dead letters
TRAIN, EVAL, JUDGED = "train", "eval", "judged"
SPLITS = (TRAIN, EVAL, JUDGED)
RECORD_SUFFIX = ".tfrecord.gz"  # gzip TFRecords of serialized ELWCs, `part-SSSSS-of-NNNNN` + this
RECORD_GLOB = "*" + RECORD_SUFFIX

# --- train / evaluate ----------------------------------------------------------------------------
MODEL_CONFIG = "model_config.json"
TRAIN_SUMMARY = "train_summary.json"
METRICS_FILE = "metrics.json"

# --- export: the SavedModel and its signatures (serving/signatures.py builds them) ---------------
SAVED_MODEL_FILE = "saved_model.pb"
SERVING_DEFAULT = "serving_default"  # `examples`: serialized tf.Examples, one per candidate
RAW_SIGNATURE = "score_lists"  # one raw tensor per spec feature, [lists, candidates]
ELWC_SIGNATURE = "score_elwc"  # `elwcs`: serialized ExampleListWithContext, one per list
EXAMPLES = "examples"
ELWCS = "elwcs"
SCORES = "scores"


def split_files(data_dir: str, split: str) -> list[str]:
    """The record files of one split of a preprocess output, sorted (none: an empty list)."""
    return storage.glob(os.path.join(data_dir, split, RECORD_GLOB))


def saved_model_file(version_dir: str) -> str:
    """`version_dir`'s saved_model.pb; RankerError unless there is one."""
    path = os.path.join(version_dir, SAVED_MODEL_FILE)
    if not storage.isfile(path):
        raise RankerError(f"{version_dir}: no {SAVED_MODEL_FILE}; give an exported version folder (BASE/<n>)")
    return path


def read_json(path: str, default=None):
    """The JSON value in `path`; `default` when there is no such file. RankerError when the file
    exists but is not JSON."""
    if not storage.exists(path):
        return default
    try:
        return json.loads(storage.read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise RankerError(f"{path}: not valid JSON ({str(err).splitlines()[0]})") from None


def write_json(path: str, obj, indent: int | None = 2) -> str:
    """Writes `obj` as JSON to `path` atomically (write_text). NaN and infinities are refused
    (RankerError: they are not JSON). Returns `path`."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    except ValueError as err:
        raise RankerError(f"{path}: cannot write as JSON ({err})") from None
    return write_text(path, text)


def write_text(path: str, text: str) -> str:
    """Writes `text` to `path` atomically: a hidden temporary file beside it, then a rename that
    replaces `path`, so a reader (or a server polling the folder) never sees half a file (on
    object storage the rename is a copy then a delete; each object appears whole). Returns `path`."""
    tmp = storage.join(storage.parent(path), f".{storage.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with storage.open_file(tmp, "w") as fh:
            fh.write(text)
        storage.rename(tmp, path, overwrite=True)
    finally:
        storage.remove(tmp)
    return path
