"""partitioned.py (TestPipeline + assert_that): log files → lists through request partitions,
with the list rules, dead letters with their raw line, counters, and harvest units that add up
across partitions; spill.py's files on their own."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from ranker.pipeline import parse
from ranker.pipeline.lists import DEAD_LETTER, LISTS, TRUNCATED
from ranker.pipeline.partitioned import LINES_READ, UNITS, PartitionedLists
from ranker.pipeline.runtime import NAMESPACE
from ranker.pipeline.spill import (SpillWriter, estimated_raw_bytes, partition_of, plan_partitions,
                                   read_spill)

from pipeline_helpers import SPEC, _DROP, beam_pipeline, dumps, record, write_lines

JUDGED = dict(clicked=_DROP, relevance=2)


def _files(tmp_path, by_file: dict[str, list[bytes]]) -> dict[str, str]:
    return {name: str(write_lines(tmp_path / f"{name}.jsonl", lines))
            for name, lines in by_file.items()}


def _run(tmp_path, files: list[str], partitions: int, shards: int = 1):
    """PartitionedLists on read tasks of `files`; returns (pipeline, outputs) unrun."""
    p = beam_pipeline()
    tasks = p | beam.Create([(f, s, shards) for f in files for s in range(shards)])
    return p, tasks | PartitionedLists(SPEC, partitions, str(tmp_path / "spill"))


def test_lists_follow_the_list_rules_across_files_and_partitions(tmp_path):
    a = ([dumps(record("ok", 2)), dumps(record("dup", 1, item_id="first")),
          dumps(record("dup", 2)), dumps(record("dup", 1, item_id="second")), dumps(record("ok", 1))]
         + [dumps(record("long", i + 1)) for i in range(SPEC.max_list_size + 2)]
         + [dumps(record("jlong", i + 1, **JUDGED)) for i in range(SPEC.max_list_size + 1)]
         + [dumps(record("mixed", 1)), dumps(record("mixed", 2, **JUDGED))]
         + [dumps(record("j", 2, **JUDGED)), dumps(record("j", 1, **JUDGED))]
         + [dumps(record("dev", 1)), dumps(record("dev", 2, device_type="mobile"))]
         + [dumps(record("ctx", 1)), dumps(record("ctx", 2, context={"query": "x"}))]
         + [b"{oops"])
    files = _files(tmp_path, {"a": a, "b": [dumps(record("ok", 3))]})
    raw_of = {(files["a"], n): line.decode() for n, line in enumerate(a, 1)}
    size = SPEC.max_list_size
    number = {key: n for n, key in enumerate(
        ["ok2", "dup1", "dup2", "dup1b", "ok1"] + [f"long{i}" for i in range(size + 2)]
        + [f"jlong{i}" for i in range(size + 1)] + ["mixed1", "mixed2", "j2", "j1", "dev1",
                                                     "dev2", "ctx1", "ctx2", "oops"], 1)}
    p, out = _run(tmp_path, sorted(files.values()), partitions=3)
    lists = out[LISTS] | beam.Map(lambda l: (l[0], l[1], [(i["position"], i["item_id"])
                                                         for i in l[2]]))
    dead = out[DEAD_LETTER] | beam.Map(lambda d: (d["line"], d["reason"],
                                                  d["raw"] == raw_of[(d["source"], d["line"])]))
    assert_that(lists, equal_to([
        ("ok", "clicked", [(1, "ok-i1"), (2, "ok-i2"), (3, "ok-i3")]),
        ("dup", "clicked", [(1, "first"), (2, "dup-i2")]),
        ("j", "judged", [(1, "j-i1"), (2, "j-i2")]),
        ("long", "clicked", [(i + 1, f"long-i{i + 1}") for i in range(size)])]), label="lists")
    assert_that(out[TRUNCATED], equal_to([2]), label="truncated")
    assert_that(out[LINES_READ] | beam.CombineGlobally(sum), equal_to([len(a) + 1]),
                label="lines")
    assert_that(dead, equal_to(
        [(number["dup1b"], parse.DUPLICATE_POSITION, True), (number["oops"], parse.INVALID_JSON, True)]
        + [(number[f"jlong{i}"], parse.LIST_TOO_LONG, True) for i in range(size + 1)]
        + [(number[k], parse.MIXED_LABELS, True) for k in ("mixed1", "mixed2")]
        + [(number[k], parse.INCONSISTENT_REQUEST, True) for k in ("dev1", "dev2", "ctx1", "ctx2")]),
        label="dead")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in
                result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    assert counters["lines_read"] == len(a) + 1 and counters["dead_letter_invalid_json"] == 1
    assert counters["lists_clicked"] == 3 and counters["lists_judged"] == 1


def test_a_request_split_over_files_and_read_shards_is_one_list(tmp_path):
    lines = {name: [dumps(record(f"r{r}", pos, clicked=int(pos == 1))) for r in range(40)
                    for pos in positions] for name, positions in (("a", (1, 3)), ("b", (2,)))}
    files = _files(tmp_path, lines)
    p, out = _run(tmp_path, sorted(files.values()), partitions=4, shards=2)
    assert_that(out[LISTS] | beam.Map(lambda l: (l[0], [i["position"] for i in l[2]])),
                equal_to([(f"r{r}", [1, 2, 3]) for r in range(40)]), label="lists")
    units = (out[UNITS] | beam.Map(lambda ref: ref[1]) | beam.FlatMap(read_spill)
             | beam.Map(lambda unit: (unit[0][1], unit[1])))
    # each item is shown at one position in one request: one unit, one impression
    assert_that(units, equal_to([(f"r{r}-i{pos}", {pos: (1, int(pos == 1))})
                                 for r in range(40) for pos in (1, 2, 3)]), label="units")
    p.run().wait_until_finish()


def test_spill_files_round_trip_by_partition(tmp_path):
    writer = SpillWriter(str(tmp_path), partitions=3, flush_entries=4)
    entries = [(f"k{i}", i, b"x" * i) for i in range(25)]
    for entry in entries:
        writer.add(entry[0], entry)
    refs = writer.close()
    assert sorted({partition for partition, _ in refs}) == [0, 1, 2]
    for partition, path in refs:
        got = list(read_spill(path))
        assert got == [e for e in entries if partition_of(e[0], 3) == partition]


def test_plan_partitions_grows_with_the_input(tmp_path):
    small = write_lines(tmp_path / "s.jsonl", [b"x" * 99] * 10)
    big = write_lines(tmp_path / "b.jsonl", [b"x" * 999] * 1000)
    assert estimated_raw_bytes([str(small), str(big)]) == 1_001_000
    assert plan_partitions(estimated_raw_bytes([str(small)]), partition_bytes=10_000) == 1
    assert plan_partitions(estimated_raw_bytes([str(small), str(big)]), partition_bytes=10_000) == 101


def test_preprocess_leaves_no_spill_files(tmp_path):
    from ranker.pipeline import preprocess as pp

    logs = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record(f"r{i}", 1)) for i in range(9)])
    pp.run_preprocess(str(logs), str(tmp_path / "out"), None, [])
    left = [p for p in tmp_path.rglob("*") if "spill" in p.name]
    assert left == [] and (tmp_path / "out" / "train").is_dir()


def test_large_logs_use_every_core_unless_the_flags_say_otherwise(tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import DirectOptions

    from ranker.pipeline import preprocess as pp

    logs = [str(write_lines(tmp_path / "a.jsonl", [b"x" * 99] * 10))]
    monkeypatch.setattr(pp.multiprocessing, "cpu_count", lambda: 4)
    for threshold, args, expected in [(2000, [], (1, "in_memory")),
                                      (500, [], (4, "multi_processing")),
                                      (500, ["--direct_num_workers=1"], (1, "in_memory")),
                                      (500, ["--runner", "FnApiRunner"], (1, "in_memory"))]:
        monkeypatch.setattr(pp, "LOCAL_PARALLEL_BYTES", threshold)
        options = pp.pipeline_options(args)
        pp._use_every_core(options, args, estimated_raw_bytes(logs))
        direct = options.view_as(DirectOptions)
        assert (direct.direct_num_workers, direct.direct_running_mode) == expected, (threshold, args)
