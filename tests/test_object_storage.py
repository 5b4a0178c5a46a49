"""Every verb on s3:// paths, against a local S3-compatible server (moto's server mode).

simulate → preprocess (Beam's S3 file system, apache-beam[aws]) → train → evaluate → export →
validate (TensorFlow's S3 file system from tensorflow-io, ranker[aws]), each a `python -m ranker`
process whose every path is s3://…; what they wrote is checked through boto3. Skipped when moto,
boto3 or tensorflow-io is not installed (`pip install -e '.[aws,test]'` installs them; CI does).
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ranker import artifacts
from ranker.serving import verdict

pytestmark = pytest.mark.slow
NEEDED = ("moto", "boto3", "tensorflow_io", "flask")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
BUCKET = "ranker-test"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """(boto3 client, env for the ranker processes, Beam's S3 flags) of a fresh moto server."""
    if MISSING:
        pytest.skip(f"needs {', '.join(MISSING)}: pip install -e '.[aws,test]'")
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    env = {**os.environ, **credentials, "AWS_DEFAULT_REGION": "us-east-1",
           # tensorflow-io's S3 file system: the endpoint and plain http
           "S3_ENDPOINT": endpoint, "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    beam = ["--s3_endpoint_url", endpoint, "--s3_access_key_id", "testing",
            "--s3_secret_access_key", "testing", "--s3_region_name", "us-east-1"]
    yield client, env, beam
    server.stop()


def _ranker(env: dict, *args: str) -> None:
    """Runs `python -m ranker ARGS` in a process of its own; fails the test on a non-zero exit."""
    done = subprocess.run([sys.executable, "-m", "ranker", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"ranker {args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}"


def _keys(client, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])}


def _json(client, key: str):
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_every_verb_on_s3(s3, tmp_path):
    client, env, beam = s3
    url = f"s3://{BUCKET}"

    _ranker(env, "simulate", "--num-queries", "60", "--sessions-per-query", "20", "--seed", "3",
            "--output", f"{url}/logs")
    logs = _keys(client, "logs")
    assert {artifacts.IMPRESSIONS_FILE, artifacts.JUDGED_FILE, artifacts.SPEC_FILENAME,
            artifacts.TRUTH_FILE, artifacts.SUMMARY_FILE} <= logs
    body = client.get_object(Bucket=BUCKET, Key=f"logs/{artifacts.IMPRESSIONS_FILE}")["Body"].read()
    lines = gzip.decompress(body).decode("utf-8").splitlines()
    assert len(lines) == _json(client, f"logs/{artifacts.SUMMARY_FILE}")["impressions"] > 0

    _ranker(env, "preprocess", "--input", f"{url}/logs/{artifacts.LOG_GLOB}", "--output", f"{url}/data",
            *beam)
    data = _keys(client, "data")
    stats = _json(client, f"data/{artifacts.STATS_FILE}")
    assert stats["lines_read"] == len(lines) + len(gzip.decompress(client.get_object(
        Bucket=BUCKET, Key=f"logs/{artifacts.JUDGED_FILE}")["Body"].read()).splitlines())
    for split in artifacts.SPLITS:
        assert any(k.startswith(f"{split}/") and k.endswith(artifacts.RECORD_SUFFIX) for k in data), split
    assert {artifacts.SPEC_FILENAME, artifacts.TRUTH_FILE, artifacts.HARVESTED_FILE} <= data

    _ranker(env, "train", "--data", f"{url}/data", "--model-dir", f"{url}/model", "--epochs", "1",
            "--batch-size", "32", "--hidden-units", "16", "--embedding-dim", "4")
    model = _keys(client, "model")
    assert {artifacts.MODEL_CONFIG, artifacts.TRAIN_SUMMARY} <= model
    assert any(k.startswith("checkpoints/ckpt-1") for k in model)
    assert _json(client, f"model/{artifacts.TRAIN_SUMMARY}")["data_dir"] == f"{url}/data"

    _ranker(env, "evaluate", "--model-dir", f"{url}/model", "--data", f"{url}/data")
    metrics = _json(client, f"model/{artifacts.METRICS_FILE}")
    assert 0.0 < metrics["judged"]["ndcg@10"] <= 1.0 and 0.0 < metrics["ips"]["ndcg@10"] <= 1.0
    assert "propensity.png" in _keys(client, "model")

    _ranker(env, "export", "--model-dir", f"{url}/model", "--export-base", f"{url}/serving")
    serving = _keys(client, "serving")
    assert {f"1/{artifacts.SAVED_MODEL_FILE}", "1/variables/variables.index", "models.config"} <= serving
    assert not [k for k in serving if k.startswith(".tmp-")]  # the temporary prefix is gone

    _ranker(env, "validate", "--candidate", f"{url}/serving/1", "--data", f"{url}/data")
    judged = _json(client, f"serving/1/{verdict.BLESSED}")
    assert judged["blessed"] is True and judged[verdict.FINGERPRINT_KEY]

    # the verdict's fingerprint is the one of the files on S3: a local copy fingerprints the same
    local = tmp_path / "1"
    for key in _keys(client, "serving/1"):
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, f"serving/1/{key}", str(local / key))
    assert verdict.fingerprint(str(local)) == judged[verdict.FINGERPRINT_KEY]
