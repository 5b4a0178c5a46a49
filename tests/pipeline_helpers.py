"""Helpers shared by the preprocess tests: the test spec, log records, writing logs, reading outputs."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from ranker.features import spec as fs

SPEC_JSON = {
    "max_list_size": 5,
    "context": [{"name": "query", "kind": "categorical", "vocabulary_size": 3}],
    "item": [
        {"name": "brand", "kind": "categorical", "hash_buckets": 8},
        {"name": "price", "kind": "numeric"},
        {"name": "emb", "kind": "vector", "length": 3},
    ],
}
SPEC = fs.parse_spec(SPEC_JSON)
DEVICES = ("desktop", "mobile", "tablet")


def beam_pipeline():
    """TestPipeline on the in-process runner (DirectRunner would try to download Prism)."""
    return BeamTestPipeline(runner=FnApiRunner())


def record(request_id="r1", position=1, **overrides) -> dict:
    rec = {"request_id": request_id, "position": position, "device_type": "desktop",
           "item_id": f"{request_id}-i{position}", "clicked": 0, "timestamp": 1_700_000_000,
           "context": {"query": "shoes", "ignored_context": 1},
           "features": {"brand": "acme", "price": 9.5, "emb": [0.1, 0.2, 0.3], "ignored": "x"}}
    rec.update(overrides)
    return {k: v for k, v in rec.items() if v is not _DROP}


_DROP = object()


def dumps(rec: dict) -> bytes:
    return json.dumps(rec).encode("utf-8")


def write_lines(path: Path, lines: list[bytes], spec: dict = SPEC_JSON) -> Path:
    """Raw lines into .jsonl or .jsonl.gz, with the feature spec beside them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(line + b"\n" for line in lines)
    if path.name.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    (path.parent / fs.SPEC_FILENAME).write_text(json.dumps(spec))
    return path


def clean_records(n_requests: int, seed: int = 0) -> list[dict]:
    """Click lists of 1..max_list_size impressions, gaps in positions, lines in shuffled order."""
    rng = random.Random(seed)
    out = []
    for r in range(n_requests):
        device = DEVICES[r % 3]
        query = ["shoes", "hats", "socks", "bags"][rng.randrange(4)]
        positions = sorted(rng.sample(range(1, 8), rng.randint(1, SPEC.max_list_size)))
        for position in positions:
            out.append(record(
                f"req{r:05d}", position, device_type=device,
                clicked=int(rng.random() < 0.5 / position),
                item_id=f"item{rng.randrange(50)}", context={"query": query},
                features={"brand": f"b{rng.randrange(5)}", "price": round(rng.uniform(1, 99), 2),
                          "emb": [round(rng.gauss(0, 1), 3) for _ in range(3)]}))
    rng.shuffle(out)
    return out


def read_records(data_dir: Path, split: str) -> list[bytes]:
    import tensorflow as tf

    files = sorted(str(p) for p in (data_dir / split).glob("*.tfrecord.gz"))
    if not files:
        return []
    return sorted(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())


def read_dead_letters(data_dir: Path) -> list[dict]:
    out = []
    for path in sorted((data_dir / "dead_letter").glob("*.jsonl")):
        out.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return out


def request_id_of(serialized: bytes) -> str:
    from tensorflow_serving.apis import input_pb2

    elwc = input_pb2.ExampleListWithContext.FromString(serialized)
    return elwc.context.features.feature[fs.REQUEST_ID].bytes_list.value[0].decode()
DROP = _DROP
