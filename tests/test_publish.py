"""The export base: every file export writes lives under it, versions, models.config (publish.py,
base_files.py). Reuses the test run's exported good model, copied into a base of its own."""
from __future__ import annotations

import os
import threading

from serving_helpers import config_entries

from ranker.serving import export, publish

# --- the export base --------------------------------------------------------------------------

def test_every_export_file_lives_under_the_base(exported, model_dir, export_base):
    parent = os.path.dirname(export_base)
    again = export.export(model_dir, export_base)
    assert again["version"] == 2 and again["export_dir"] == os.path.join(export_base, "2")
    assert sorted(os.listdir(export_base)) == ["1", "2", "batching_parameters.txt", "models.config"]
    assert os.listdir(parent) == ["ranker"]  # nothing beside the base
    assert publish.versions(export_base) == [1, 2] and publish.next_version(export_base) == 3
    assert again["models_config"] == os.path.join(export_base, "models.config")
    assert config_entries(again["models_config"]) == [("ranker", "/models/ranker")]
    assert "max_batch_size" in open(again["batching_parameters"]).read()
    assert os.path.dirname(again["batching_parameters"]) == export_base


def test_sibling_bases_written_concurrently_keep_their_entries(tmp_path):
    bases = [os.fspath(tmp_path / "serving" / name) for name in ("ranker", "ranker_b")]
    for base in bases:
        os.makedirs(base)
    errors = []
    barrier = threading.Barrier(len(bases))

    def write(base):
        try:
            for _ in range(20):
                barrier.wait()
                export.write_base_files(base)
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=write, args=(b,)) for b in bases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for base in bases:
        name = os.path.basename(base)
        assert config_entries(os.path.join(base, "models.config")) == [(name, f"/models/{name}")]
        assert sorted(os.listdir(base)) == ["batching_parameters.txt", "models.config"]
    assert sorted(os.listdir(tmp_path / "serving")) == ["ranker", "ranker_b"]
