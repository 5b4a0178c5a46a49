"""`ranker train --strategy`: mirrored on one CPU replica, and two real local workers over gRPC."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ranker import cli
from ranker.models.train import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # trains several models: the quick suite stays quick; CI runs it
def test_mirrored_on_one_cpu_replica_trains_like_default(tiny_data, tmp_path):
    mirrored = train(tiny_data, str(tmp_path / "m"), variant="naive", epochs=1, verbose=0,
                     strategy="mirrored")
    default = train(tiny_data, str(tmp_path / "d"), variant="naive", epochs=1, verbose=0)
    assert mirrored["replicas"] == 1 and mirrored["resumed_from_epoch"] == 0
    assert (tmp_path / "m" / "checkpoints" / "ckpt-1.index").exists()
    # Same seed, same batches, one replica: only reduction order may differ.
    assert mirrored["history"]["val_loss"][-1] == pytest.approx(default["history"]["val_loss"][-1],
                                                                rel=1e-3)


def test_multi_worker_without_tf_config_is_a_one_line_error(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = cli.main(["train", "--data", tiny_data, "--model-dir", str(tmp_path),
                     "--strategy", "multi-worker"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "TF_CONFIG" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(data: str, model_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ranker", "train", "--data", data, "--model-dir", str(model_dir),
            "--variant", "naive", "--epochs", "2", "--backup-every", "3", *extra]


def _summary(out: str) -> dict:
    return json.loads(out[out.index("{"):])


@pytest.mark.slow
def test_two_local_workers_train_like_one(tiny_data, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(_train_cmd(tiny_data, tmp_path / "mw", "--strategy", "multi-worker"),
                                        cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outs = [w.communicate(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err[-3000:]
    single = subprocess.run(_train_cmd(tiny_data, tmp_path / "one"), cwd=ROOT, text=True,
                            capture_output=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
    assert single.returncode == 0, single.stderr[-3000:]
    chief, worker = (_summary(out) for out, _ in outs)
    one = _summary(single.stdout)
    assert chief["replicas"] == worker["replicas"] == 2
    # Each worker trains on half of every global batch (64 of 128 lists; auto-shard by DATA),
    # the losses are scaled by 1/replicas, so a step is the single worker's step up to the
    # weighting of the halves (equal here: all lists are full) and float reduction order.
    # val_loss is over all 120 eval lists (one batch).
    assert chief["history"]["val_loss"] == worker["history"]["val_loss"]
    assert chief["history"]["val_loss"][-1] == pytest.approx(one["history"]["val_loss"][-1], rel=0.01)
    assert chief["history"]["val_loss"][-1] < chief["history"]["val_loss"][0]  # it learned
    # Only the chief's files remain: checkpoints, no worker temp dirs, no backup left after fit.
    names = sorted(os.listdir(tmp_path / "mw"))
    assert not [n for n in names if n.startswith(".") or "workertemp" in n], names
    assert (tmp_path / "mw" / "checkpoints" / "ckpt-2.index").exists()
    assert not os.listdir(tmp_path / "mw" / "backup")
    assert not [p for p in (tmp_path / "mw").rglob("*workertemp*")]
