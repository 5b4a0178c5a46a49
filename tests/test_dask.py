"""Beam's DaskRunner (issue 12 item 3). At apache-beam 2.77.0 it computes only the last transform's
bag, feeds every tagged output to each consumer and drops finish_bundle outputs (the canaries
below), so preprocess builds its graph's dask_safe form there (ranker/pipeline/portable.py). The
same logs must give the same records, dead letters, vocabularies and stats on both runners."""
from __future__ import annotations

import json
import os

import pytest

from pipeline_helpers import clean_records, dumps, read_dead_letters, read_records, record, \
    write_lines
from ranker.artifacts import HARVESTED_FILE, STATS_FILE
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline import preprocess as pp
from ranker.pipeline.lists import SPLITS

_COUNTS = ("lines_read", "impressions_valid", "dead_letter", "truncated_impressions",
           "lists_truncated", "requests", "impressions", "unknown_device",
           "impressions_by_position_device", "clicks_by_position_device")


def _logs(tmp_path):
    """Click lists, a judged list, a truncated list, line- and list-level dead letters, in
    shuffled order and over two files (one gzip)."""
    lines = [dumps(r) for r in clean_records(60, seed=5)]
    judged = [record("j1", p, clicked=None, relevance=float(p % 3)) for p in (1, 2, 3)]
    lines += [dumps(r) for r in judged] + [b"{broken", b"\xff\xfe", dumps(record("dup", 1)),
                                            dumps(record("dup", 1, item_id="other"))]
    lines += [dumps(record("long", p)) for p in range(1, 9)]  # max_list_size 5: truncated
    write_lines(tmp_path / "logs" / "a.jsonl", lines[: len(lines) // 2])
    write_lines(tmp_path / "logs" / "b.jsonl.gz", lines[len(lines) // 2:])
    return str(tmp_path / "logs" / "*.jsonl*"), len(lines)


def _outputs(out) -> dict:
    """What must be identical across runners: records per split (as sorted multisets), dead
    letters, vocabularies, stats counts, the resolved spec and the harvested propensities."""
    stats = json.loads((out / STATS_FILE).read_text())
    features = {name: {k: v for k, v in entry.items() if k not in ("min", "max", "mean")}
                for name, entry in stats["features"].items()}
    return {
        "records": {split: read_records(out, split) for split in SPLITS},
        "dead": sorted(json.dumps(d, sort_keys=True) for d in read_dead_letters(out)),
        "vocab": {p.name: p.read_text() for p in sorted((out / fs.VOCAB_DIR).iterdir())},
        "stats": {key: stats[key] for key in _COUNTS},
        "features": features,
        "spec": (out / fs.SPEC_FILENAME).read_text(),
        "harvested": (out / HARVESTED_FILE).read_text(),
    }


def test_dask_form_of_the_graph_gives_the_same_output_on_fn_api_runner(tmp_path, monkeypatch):
    """The dask_safe graph (pairs instead of tagged outputs, no bundle buffers, whole-file sinks,
    no side inputs), run on FnApiRunner: same output as the default graph, several shards."""
    logs, n_lines = _logs(tmp_path)
    default = pp.run_preprocess(logs, str(tmp_path / "default"), None, [])
    monkeypatch.setattr(pp, "graph_form", lambda options, files: (True, 2, 3))
    portable = pp.run_preprocess(logs, str(tmp_path / "portable"), None, [])
    assert portable["lines_read"] == default["lines_read"] == n_lines
    assert default["dead_letter"]["total"] == 3 and default["truncated_impressions"] == 3
    mine, theirs = _outputs(tmp_path / "portable"), _outputs(tmp_path / "default")
    assert mine == theirs and all(mine["records"].values())
    shards = sorted(p.name for p in (tmp_path / "portable" / "train").iterdir())
    assert shards == [f"part-0000{i}-of-00003.tfrecord.gz" for i in range(3)]


def test_dask_flags_are_checked(tmp_path):
    logs, _ = _logs(tmp_path)
    with pytest.raises(RankerError, match="--dask_client_address: only with --runner DaskRunner"):
        pp.run_preprocess(logs, str(tmp_path / "out"), None,
                          ["--dask_client_address=tcp://127.0.0.1:1"])
    pytest.importorskip("distributed", reason="pip install 'ranker[dask]'")
    options = pp.pipeline_options(["--runner", "DaskRunner", "--dask_client_address",
                                   "tcp://scheduler:8786", "--dask_npartitions", "5"])
    assert options.view_as(pp.StandardOptions).runner.endswith("dask_runner.DaskRunner")
    assert pp.graph_form(options, ["a.jsonl", "b.jsonl"]) == (True, 3, 6)
    assert options.get_all_options()["address"] == "tcp://scheduler:8786"
    with pytest.raises(RankerError, match="unknown option"):
        pp.pipeline_options(["--runner", "DaskRunner", "--dask_no_such_flag=1"])
    assert not (tmp_path / "out").exists()


def _cluster():
    distributed = pytest.importorskip("distributed", reason="pip install 'ranker[dask]'")
    return distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                    dashboard_address=None)


@pytest.mark.slow
def test_dask_runner_gives_the_same_output_as_fn_api_runner(tmp_path):
    logs, _ = _logs(tmp_path)
    pp.run_preprocess(logs, str(tmp_path / "local"), None, [])
    with _cluster() as cluster:
        stats = pp.run_preprocess(logs, str(tmp_path / "dask"), None, [
            "--runner", "DaskRunner", f"--dask_client_address={cluster.scheduler_address}",
            "--dask_npartitions=4"])  # 2 files: 2 read tasks each
    assert stats["beam_args"][:2] == ["--runner", "DaskRunner"]
    assert len(list((tmp_path / "dask" / "train").iterdir())) == 4
    mine, theirs = _outputs(tmp_path / "dask"), _outputs(tmp_path / "local")
    for key in theirs:
        assert mine[key] == theirs[key], key
    assert all(mine["records"].values())
    assert json.loads(mine["harvested"])["units"]


def _run_on(cluster, build) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                               f"--dask_client_address={cluster.scheduler_address}"])
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    result.client.close()


def _touch(x, folder):
    (folder / str(x)).write_text("")
    return x


@pytest.mark.slow
def test_canaries_beam_dask_runner_still_needs_the_dask_safe_form(tmp_path):
    """Beam 2.77's DaskRunner: only the branch applied last runs, tagged outputs reach every
    consumer, and WriteToText leaves its shard empty. Once these fail, Beam fixed it."""
    import apache_beam as beam

    class Odd(beam.DoFn):
        def process(self, x):
            yield beam.pvalue.TaggedOutput("odd", x) if x % 2 else x

    def branches(pipeline):
        pipeline | "First" >> beam.Create([1]) | "TouchFirst" >> beam.Map(_touch, tmp_path)
        pipeline | "Last" >> beam.Create([2]) | "TouchLast" >> beam.Map(_touch, tmp_path)

    def tagged(pipeline):
        outputs = pipeline | beam.Create([10, 11]) | beam.ParDo(Odd()).with_outputs("odd")
        _ = outputs.odd | beam.Map(lambda x: _touch(x, tmp_path) if x % 2 == 0 else x)

    with _cluster() as cluster:
        _run_on(cluster, branches)
        _run_on(cluster, tagged)
        _run_on(cluster, lambda p: p | beam.Create(["a"]) | beam.io.WriteToText(
            str(tmp_path / "text")))
    written = sorted(name for name in os.listdir(tmp_path) if not name.startswith("beam-temp"))
    assert written == ["10", "2", "text-00000-of-00001"]
    assert (tmp_path / "text-00000-of-00001").read_text() == ""
