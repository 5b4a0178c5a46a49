"""A `ranker train` killed mid-epoch (SIGKILL) resumes from its last backup when restarted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_tiny_data
from ranker.models.evaluate import evaluate
from ranker.models.train import BACKUP_DIR, backup_position

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _cmd(data: Path, model_dir: Path) -> list[str]:
    # 6000 lists in batches of 16: 375 steps an epoch, a backup every 25 of them.
    return [sys.executable, "-m", "ranker", "train", "--data", str(data), "--model-dir", str(model_dir),
            "--variant", "naive", "--epochs", "3", "--batch-size", "16", "--backup-every", "25"]


def _run(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{"):])


def _kill_in_second_epoch(cmd: list[str], model_dir: Path) -> tuple[int, int]:
    """Starts training and SIGKILLs it once a backup from the second epoch (index 1) exists."""
    job = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and job.poll() is None:
            position = backup_position(str(model_dir / BACKUP_DIR))
            if position and position[0] >= 1 and position[1] > 0:
                job.send_signal(signal.SIGKILL)
                job.wait()
                return position
            time.sleep(0.05)
        pytest.fail(f"no second-epoch backup before the job ended (rc {job.poll()})")
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


@pytest.mark.slow
def test_killed_training_resumes_from_its_backup(tmp_path):
    data = write_tiny_data(tmp_path / "data", n_train=6000, seed=1)
    whole = _run(_cmd(data, tmp_path / "whole"))
    killed_at = _kill_in_second_epoch(_cmd(data, tmp_path / "killed"), tmp_path / "killed")
    assert (tmp_path / "killed" / "checkpoints" / "ckpt-1.index").exists()
    resumed = _run(_cmd(data, tmp_path / "killed"))
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["resumed_from_backup"][0] == 1 and resumed["resumed_from_backup"][1] >= killed_at[1]
    assert len(resumed["history"]["loss"]) == 2  # the rest of epoch 2, then epoch 3
    assert not os.listdir(tmp_path / "killed" / BACKUP_DIR)  # fit deleted it when done
    a = evaluate(str(data), model_dir=str(tmp_path / "whole"))
    b = evaluate(str(data), model_dir=str(tmp_path / "killed"))
    # Not bitwise equal: the restarted job replays no shuffle state (the resumed epoch takes its
    # remaining steps from a fresh permutation), so a few hundred of the 1125 steps see other
    # batches. Measured on two data seeds: resumed vs uninterrupted eval log loss +1.1% / −0.8%,
    # judged nDCG@10 ±0.006; two uninterrupted runs with different --seed differ by 0.3–0.4% and
    # 0.002–0.015. 2% and 0.05 leave room for that noise; that the run did resume (and did not
    # start over) is asserted above from its summary.
    assert b["clicks"]["log_loss"] == pytest.approx(a["clicks"]["log_loss"], rel=0.02)
    assert abs(b["judged"]["ndcg@10"] - a["judged"]["ndcg@10"]) < 0.05
