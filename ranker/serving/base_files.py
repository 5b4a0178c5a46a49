"""The files of an export base besides its versions: TF Serving's model config and a batching example.

    BASE/models.config              TF Serving model config: this base's model (one entry)
    BASE/batching_parameters.txt    an example for --enable_batching (written once)

Both live inside BASE (TF Serving's poller ignores non-integer names there), so exports into
sibling bases never touch each other's files; each is written atomically (artifacts.write_text).
"""
from __future__ import annotations

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from ranker import storage
from ranker.artifacts import write_text
from ranker.errors import RankerError

MODELS_CONFIG = "models.config"
BATCHING_FILE = "batching_parameters.txt"
CONTAINER_MODELS = "/models"  # where the tensorflow/serving image expects model bases

BATCHING_EXAMPLE = """\
# TF Serving request batching (tensorflow_model_server --enable_batching
#   --batching_parameters_file=THIS_FILE). The relevance tower scores each candidate on its own,
# so batching the `examples` of several requests together leaves every score unchanged.
max_batch_size { value: 1024 }        # candidates per batch (all requests' examples together)
batch_timeout_micros { value: 1000 }  # wait at most 1 ms to fill a batch
max_enqueued_batches { value: 64 }
num_batch_threads { value: 4 }        # ~ the number of CPU cores
pad_variable_length_inputs: true      # score_lists requests of different list sizes
"""


def model_name(export_base: str) -> str:
    """The model's name in TF Serving: the base folder's name."""
    return storage.basename(storage.absolute(export_base))


def models_config(export_base: str, name: str) -> tuple[str, str]:
    """(path, text) of BASE/models.config with this model's entry added or updated."""
    base = storage.absolute(export_base)
    path = storage.join(base, MODELS_CONFIG)
    config = model_server_config_pb2.ModelServerConfig()
    if storage.exists(path):
        try:
            with storage.open_file(path) as fh:
                text_format.Parse(fh.read(), config)
        except text_format.ParseError as err:
            raise RankerError(f"{path}: not a TF Serving model config ({err}); fix or remove it") from None
    entries = config.model_config_list.config
    entry = next((c for c in entries if c.name == name), None) or entries.add()
    entry.name = name
    entry.base_path = f"{CONTAINER_MODELS}/{name}"
    entry.model_platform = "tensorflow"
    header = (f"# TF Serving model config (--model_config_file). base_path is the container path:\n"
              f"# mount {base} at {CONTAINER_MODELS}/{name}, or edit it to"
              f" {base} for a local tensorflow_model_server.\n")
    return path, header + text_format.MessageToString(config)


def write_base_files(export_base: str, config: tuple[str, str] | None = None) -> tuple[str, str]:
    """Writes BASE/models.config (`config`: a prepared (path, text)) and, once, BASE's batching
    example; returns their paths. Both live inside BASE, each written atomically."""
    path, text = config or models_config(export_base, model_name(export_base))
    write_text(path, text)
    batching = storage.join(storage.absolute(export_base), BATCHING_FILE)
    if not storage.exists(batching):
        write_text(batching, BATCHING_EXAMPLE)
    return path, batching
