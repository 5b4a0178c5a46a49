"""models/data.py: the parsed-size estimate and the cache-or-stream decision of train's input."""
from __future__ import annotations

import pytest

from ranker.artifacts import EVAL, TRAIN
from ranker.errors import RankerError
from ranker.models import data


def _exact_bytes(data_dir: str, split: str, spec, list_size: int) -> int:
    """Every batch of the split measured, not one batch extrapolated."""
    return sum(data.batch_bytes(b) for b in data.dataset(data_dir, split, spec, list_size, 64))


@pytest.mark.parametrize("split", [TRAIN, EVAL])
def test_parsed_bytes_estimates_the_cached_size_of_a_split(tiny_data, split):
    spec = data.data_spec(tiny_data)
    size = data.click_list_size(tiny_data, spec)
    estimate, exact = data.parsed_bytes(tiny_data, split, spec, size), _exact_bytes(tiny_data, split, spec, size)
    assert exact > 0 and estimate == pytest.approx(exact, rel=0.1)
    # longer padded lists take more memory
    assert data.parsed_bytes(tiny_data, split, spec, spec.max_list_size) > estimate


def test_cache_mode_follows_the_flag_and_the_free_memory():
    assert data.cache_mode("auto", 10, free=100) == "memory"
    assert data.cache_mode("auto", 60, free=100) == "disk"  # more than half the free memory
    assert data.cache_mode("memory", 10**15) == "memory" and data.cache_mode("none", 1) == "none"
    assert data.available_memory() > 0
    with pytest.raises(RankerError, match="--input-cache"):
        data.cache_mode("ssd", 1)


def test_disk_cache_replays_the_same_batches_as_memory(tiny_data, tmp_path):
    spec = data.data_spec(tiny_data)
    size = data.click_list_size(tiny_data, spec)

    def batches(cache):  # each epoch's batches, in sorted order, by their price values
        ds = data.dataset(tiny_data, TRAIN, spec, size, 32, shuffle=True, seed=3, cache=cache)
        return [sorted(tuple(b["price"].numpy().round(5).ravel()) for b in epoch) for epoch in (ds, ds)]

    on_disk = batches(str(tmp_path / "cache"))
    assert on_disk == batches(True)  # the same batches, epoch after epoch, as the memory cache
    assert any(p.name.startswith("cache") for p in tmp_path.iterdir())


def test_train_refuses_an_unknown_input_cache(tiny_data, tmp_path):
    from ranker.models.train import train

    with pytest.raises(RankerError, match="--input-cache"):
        train(tiny_data, str(tmp_path / "m"), input_cache="ssd", verbose=0)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("mode", ["disk", "memory"])
def test_training_input_fills_its_cache_before_fit(tiny_data, tmp_path, mode):
    """fit reads exactly steps_per_epoch batches an epoch and never the end of the data; a cache
    left unfinished that way is discarded by tf.data, so training_input fills it first."""
    import math

    from ranker.models.config import ModelConfig

    spec = data.data_spec(tiny_data)
    size = data.click_list_size(tiny_data, spec)
    steps = math.ceil(data.num_lists(tiny_data, TRAIN) / 64)
    config = ModelConfig(variant="naive", batch_size=64, train_list_size=size, steps_per_epoch=steps)
    train_ds, eval_ds = data.training_input(config, tiny_data, spec, mode, str(tmp_path))
    assert eval_ds is not None and int(train_ds.cardinality()) == steps
    if mode == "disk":  # tf.data writes a cache's index file when the cache is complete
        assert (tmp_path / f"{TRAIN}.index").exists() and (tmp_path / f"{EVAL}.index").exists()
    else:
        assert not list(tmp_path.iterdir())
    first = [b["price"].numpy().sum() for b in train_ds.take(steps)]
    assert len(first) == steps  # an epoch as fit reads it
