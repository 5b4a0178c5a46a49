"""The Beam preprocess job as a whole (its PTransforms are tested in test_read, test_lists,
test_write and test_summaries; line validation in test_parse): dead letters, the no-line-lost
invariant, the ELWC round trip through TF-Ranking's parser, stable splits, vocabularies,
Parquet = JSONL, byte-identical re-runs, driver errors, and simulate → preprocess."""
from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline import parse
from ranker.pipeline import preprocess as pp
from ranker.pipeline.lists import SPLITS, split_of

from pipeline_helpers import (
    DEVICES, SPEC, SPEC_JSON, _DROP, clean_records, dumps, read_dead_letters, read_records, record, request_id_of, write_lines)


# --- whole runs ----------------------------------------------------------------------------------

def rich_input(root: Path) -> dict:
    """Two files: clean lists, one line of every bad class, list-level faults, judged lists."""
    judged = dict(clicked=_DROP, relevance=1.5)
    a_lines = [dumps(r) for r in clean_records(300, seed=1)]
    bad_a = {
        parse.INVALID_UTF8: b'{"request_id": "bad\xff", "position": 1}',
        parse.INVALID_JSON: b"{this is not json",
        parse.MISSING_FIELD: dumps(record("m1", 1, clicked=_DROP)),
        parse.WRONG_TYPE: dumps(record("w1", 1, context={"query": {"a": 1}})),
        parse.INVALID_POSITION: dumps(record("p1", 2.0)),
        parse.NON_FINITE: b'{"request_id": "n1", "position": 1, "device_type": "desktop", '
                          b'"item_id": "i", "clicked": 1, "features": {"price": NaN}}',
        parse.WRONG_VECTOR_LENGTH: dumps(record("v1", 1, features={"emb": [1.0]})),
        parse.OUT_OF_RANGE: dumps(record("o1", 1, features={"emb": [1.0, 1e39, 0.0]})),
    }
    expected = {}
    lines = list(a_lines)
    for i, (reason, raw) in enumerate(bad_a.items()):
        lines.insert(10 * i + 5, raw)
    for reason, raw in bad_a.items():
        expected[reason] = [("a.jsonl", lines.index(raw) + 1)]
    lines.append(b"")  # a blank line is a line too: invalid_json
    expected[parse.INVALID_JSON].append(("a.jsonl", len(lines)))
    write_lines(root / "a.jsonl", lines)

    b_lines = [dumps(record(f"s{i:05d}", 1, device_type=DEVICES[i % 3], clicked=i % 2))
               for i in range(3000)]
    b_lines += [dumps(record("dup", 1, item_id="kept")), dumps(record("dup", 2)),
                dumps(record("dup", 1, item_id="dropped"))]
    b_lines += [dumps(record("long", i + 1, **judged)) for i in range(SPEC.max_list_size + 1)]
    b_lines += [dumps(record("mixed", 1)), dumps(record("mixed", 2, **judged))]
    b_lines += [dumps(record("judged1", p, device_type="smartwatch", **judged)) for p in (1, 2)]
    b_lines += [dumps(record("judged2", p, device_type="unknown", **judged)) for p in (1, 2, 3)]
    b_lines += [dumps(record("tv1", 1, device_type="tv"))]
    b_lines += [dumps(record("scroll", i + 1)) for i in range(SPEC.max_list_size + 3)]
    b_lines += [dumps(record("twodev", 1)), dumps(record("twodev", 2, device_type="mobile"))]
    write_lines(root / "b.jsonl.gz", b_lines)
    start = 3001
    expected[parse.DUPLICATE_POSITION] = [("b.jsonl.gz", start + 2)]
    expected[parse.LIST_TOO_LONG] = [("b.jsonl.gz", start + 3 + i)
                                     for i in range(SPEC.max_list_size + 1)]
    start += 3 + SPEC.max_list_size + 1
    expected[parse.MIXED_LABELS] = [("b.jsonl.gz", start), ("b.jsonl.gz", start + 1)]
    start += 2 + 2 + 3 + 1 + SPEC.max_list_size + 3
    expected[parse.INCONSISTENT_REQUEST] = [("b.jsonl.gz", start), ("b.jsonl.gz", start + 1)]
    return {"lines": len(lines) + len(b_lines), "dead": expected, "truncated": 3}


@pytest.fixture(scope="module")
def rich_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rich")
    info = rich_input(root / "logs")
    stats = pp.run_preprocess(str(root / "logs" / "*"), str(root / "out"), None, [],
                              max_dead_letter_fraction=1.0)
    return root, info, stats


def test_every_bad_class_is_dead_lettered_with_source_and_line(rich_run):
    root, info, stats = rich_run
    letters = read_dead_letters(root / "out")
    got = {}
    for letter in letters:
        got.setdefault(letter["reason"], []).append((os.path.basename(letter["source"]),
                                                     letter["line"]))
        assert set(letter) == {"source", "line", "reason", "detail", "raw"}
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in info["dead"].items()}
    assert set(got) == set(parse.REASONS)
    texts = {}
    for name in ("a.jsonl", "b.jsonl.gz"):
        path = root / "logs" / name
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        texts[name] = [line.decode("utf-8", errors="replace") for line in data.split(b"\n")]
    for letter in letters:  # list-level letters too: their raw line is read back from the file
        assert letter["raw"] == texts[os.path.basename(letter["source"])][letter["line"] - 1]
    for reason, places in info["dead"].items():
        assert stats["dead_letter"]["by_reason"][reason] == len(places)


def test_no_line_disappears(rich_run):
    root, info, stats = rich_run
    assert stats["lines_read"] == info["lines"]
    assert stats["truncated_impressions"] == info["truncated"] and stats["lists_truncated"] == 1
    assert stats["lines_read"] == (stats["impressions_valid"] + stats["dead_letter"]["total"]
                                   + stats["truncated_impressions"])
    written = sum(len(read_records(root / "out", s)) for s in SPLITS)
    assert written == sum(stats["requests"].values())
    on_disk = json.loads((root / "out" / "stats.json").read_text())
    assert on_disk["lines_read"] == stats["lines_read"]


def test_unknown_device_is_counted_not_rejected(rich_run):
    root, _, stats = rich_run
    assert stats["unknown_device"] == 2  # the smartwatch judged list; "unknown" is not counted
    assert stats["requests"]["judged"] == 2
    judged_ids = {request_id_of(r) for r in read_records(root / "out", "judged")}
    assert judged_ids == {"judged1", "judged2"}
    devices = fs.read_vocabulary(str(root / "out" / "vocab" / "device_type.txt"))
    assert devices[-1] == "tv" and "smartwatch" not in devices and "unknown" not in devices


def test_split_roughly_ninety_ten_and_hash_stable(rich_run):
    root, _, stats = rich_run
    clicked = stats["requests"]["train"] + stats["requests"]["eval"]
    assert clicked > 3000
    assert 0.07 < stats["requests"]["eval"] / clicked < 0.13
    for split in ("train", "eval"):
        for rec in read_records(root / "out", split):
            assert split_of(request_id_of(rec), "clicked") == split


def test_outputs_layout_and_resolved_spec(rich_run):
    root, _, stats = rich_run
    out = root / "out"
    resolved = fs.load_spec(str(out / fs.SPEC_FILENAME))
    query = resolved.feature("query")
    assert query.vocabulary_file == "vocab/query.txt" and query.vocabulary_size == 3
    assert resolved.device_vocabulary_file == "vocab/device_type.txt"
    assert resolved.feature("brand").hash_buckets == 8
    assert stats["vocabulary_sizes"] == {"query": 3, "device_type": 4}
    assert fs.read_vocabulary(resolved.vocabulary_path(query)) == \
        fs.read_vocabulary(str(out / "vocab" / "query.txt"))
    ctr = stats["ctr_by_position_device"]
    assert set(ctr) == {"desktop", "mobile", "tablet", "tv"}
    assert [int(p) for p in ctr["desktop"]] == sorted(int(p) for p in ctr["desktop"])


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    records = clean_records(200)
    write_lines(root / "logs" / "impressions.jsonl", [dumps(r) for r in records])
    (root / "logs" / "truth.json").write_text('{"propensity": {}}')
    stats = pp.run_preprocess(str(root / "logs" / "*.jsonl"), str(root / "out"), None, [])
    return root, records, stats


def test_elwc_round_trip_through_tf_ranking(clean_run):
    import tensorflow as tf

    from ranker import tfr

    root, records, stats = clean_run
    spec = fs.load_spec(str(root / "out" / fs.SPEC_FILENAME))
    by_request: dict = {}
    for rec in records:
        by_request.setdefault(rec["request_id"], []).append(rec)
    serialized = read_records(root / "out", "train") + read_records(root / "out", "eval")
    clicked_lists = stats["requests"]["train"] + stats["requests"]["eval"]
    assert len(serialized) == len(by_request) == clicked_lists
    size = spec.max_list_size
    parsed = tfr.parse_elwc_batch(tf.constant(serialized), spec, list_size=size)
    for row, rec in enumerate(serialized):
        lines = sorted(by_request[request_id_of(rec)], key=lambda r: r["position"])
        n = len(lines)
        pad = size - n
        assert parsed[fs.MASK][row].numpy().tolist() == [True] * n + [False] * pad
        positions = [r["position"] for r in lines] + [fs.PADDING_POSITION] * pad
        clicked = [r["clicked"] for r in lines] + [int(fs.PADDING_LABEL)] * pad
        assert parsed[fs.POSITION][row].numpy().tolist() == positions
        assert parsed[fs.CLICKED][row].numpy().tolist() == clicked
        assert parsed[fs.DEVICE][row].numpy().decode() == lines[0]["device_type"]
        assert parsed["query"][row].numpy().decode() == lines[0]["context"]["query"]
        assert [b.decode() for b in parsed["brand"][row, :n].numpy()] == \
            [r["features"]["brand"] for r in lines]
        np.testing.assert_allclose(parsed["price"][row, :n].numpy(),
                                   [r["features"]["price"] for r in lines], rtol=1e-6)
        np.testing.assert_allclose(parsed["emb"][row, :n].numpy(),
                                   [r["features"]["emb"] for r in lines], rtol=1e-6, atol=1e-7)


def test_clean_run_outputs(clean_run):
    root, records, stats = clean_run
    out = root / "out"
    assert stats["dead_letter"]["total"] == 0 and stats["lines_read"] == len(records)
    assert not (out / "judged").exists()  # no judged input → no judged split
    assert (out / "truth.json").read_text() == '{"propensity": {}}'
    counts: dict = {}
    for rec in records:
        counts[rec["context"]["query"]] = counts.get(rec["context"]["query"], 0) + 1
    ranked = sorted(counts, key=lambda q: (-counts[q], q))[:3]
    assert fs.read_vocabulary(str(out / "vocab" / "query.txt")) == ranked


def test_rerun_gives_identical_records(clean_run, tmp_path):
    root, _, _ = clean_run
    before = {s: read_records(root / "out", s) for s in SPLITS}
    (root / "out" / "train" / "stale-00000-of-00001.tfrecord.gz").write_bytes(b"")
    pp.run_preprocess(str(root / "logs" / "*.jsonl"), str(root / "out"), None, [])
    after = {s: read_records(root / "out", s) for s in SPLITS}
    assert before == after and before["train"]
    assert not list((root / "out" / "train").glob("stale*"))


def test_parquet_input_gives_the_same_elwcs(clean_run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, records, _ = clean_run
    (tmp_path / "logs").mkdir()
    half = len(records) // 2
    pq.write_table(pa.Table.from_pylist(records[:half]), tmp_path / "logs" / "part1.parquet")
    pq.write_table(pa.Table.from_pylist(records[half:]), tmp_path / "logs" / "part2.parquet")
    (tmp_path / "logs" / fs.SPEC_FILENAME).write_text(json.dumps(SPEC_JSON))
    pp.run_preprocess(str(tmp_path / "logs" / "*.parquet"), str(tmp_path / "out"), None, [])
    for split in SPLITS:
        assert read_records(tmp_path / "out", split) == read_records(root / "out", split)


@pytest.mark.slow
def test_multi_processing_runner_gives_the_same_records(clean_run, tmp_path):
    root, _, stats = clean_run
    args = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    multi = pp.run_preprocess(str(root / "logs" / "*.jsonl"), str(tmp_path / "out"), None, args)
    assert multi["requests"] == stats["requests"]
    for split in SPLITS:
        assert read_records(tmp_path / "out", split) == read_records(root / "out", split)


# --- driver errors -------------------------------------------------------------------------------

def test_error_no_match_and_missing_file(tmp_path):
    with pytest.raises(RankerError, match="no file matches"):
        pp.run_preprocess(str(tmp_path / "*.jsonl"), str(tmp_path / "out"), None, [])
    with pytest.raises(RankerError, match=r"missing\.jsonl: no such file"):
        pp.run_preprocess(str(tmp_path / "missing.jsonl"), str(tmp_path / "out"), None, [])


def test_error_empty_input(tmp_path):
    path = write_lines(tmp_path / "empty.jsonl", [])
    path.write_bytes(b"")
    with pytest.raises(RankerError, match=r"empty\.jsonl: empty input"):
        pp.run_preprocess(str(path), str(tmp_path / "out"), None, [])
    gz = write_lines(tmp_path / "empty.jsonl.gz", [])
    with gzip.GzipFile(gz, "wb") as fh:
        fh.write(b"")
    with pytest.raises(RankerError, match="empty input"):
        pp.run_preprocess(str(gz), str(tmp_path / "out"), None, [])


def test_error_truncated_and_corrupt_gzip(tmp_path):
    good = write_lines(tmp_path / "good.jsonl.gz", [dumps(record(f"r{i}")) for i in range(2000)])
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RankerError, match=r"truncated\.jsonl\.gz: truncated gzip"):
        pp.run_preprocess(str(tmp_path / "*.gz"), str(tmp_path / "out"), None, [])
    truncated.unlink()
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\xff" * 100)  # reserved block type
    with pytest.raises(RankerError, match=r"corrupt\.jsonl\.gz: corrupt gzip"):
        pp.run_preprocess(str(corrupt), str(tmp_path / "out"), None, [])
    assert not (tmp_path / "out").exists()  # nothing is written before the input checks pass


def test_error_missing_or_invalid_spec(tmp_path):
    path = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record())])
    (tmp_path / "logs" / fs.SPEC_FILENAME).unlink()
    with pytest.raises(RankerError, match=r"feature_spec\.json: feature spec not found"):
        pp.run_preprocess(str(path), str(tmp_path / "out"), None, [])
    bad = tmp_path / "bad_spec.json"
    bad.write_text('{"item": [{"name": "price", "kind": "money"}]}')
    with pytest.raises(RankerError, match=r"bad_spec\.json: .*kind must be one of"):
        pp.run_preprocess(str(path), str(tmp_path / "out"), str(bad), [])
    bad.write_text("{not json")
    with pytest.raises(RankerError, match=r"bad_spec\.json: not valid JSON"):
        pp.run_preprocess(str(path), str(tmp_path / "out"), str(bad), [])


def test_error_unknown_flag_and_unsupported_file(tmp_path):
    path = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record())])
    with pytest.raises(RankerError, match="unknown option"):
        pp.run_preprocess(str(path), str(tmp_path / "out"), None, ["--no_such_flag=1"])
    (tmp_path / "logs" / "notes.txt").write_text("hello")
    with pytest.raises(RankerError, match=r"notes\.txt: not an impression log"):
        pp.run_preprocess(str(tmp_path / "logs" / "*.txt"), str(tmp_path / "out"), None, [])


def test_cli_preprocess_reports_errors_in_one_line(tmp_path, capsys):
    from ranker.cli import main

    code = main(["preprocess", "--input", str(tmp_path / "nothing*.jsonl"),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err[-1].startswith("ranker preprocess: error:")
    assert "no file matches" in err[-1]


# --- with the simulator --------------------------------------------------------------------------

def test_simulated_logs_end_to_end(tmp_path):
    from ranker.simulation import simulate

    summary = simulate.simulate_to_dir(
        world="synthetic", letor_train=None, letor_test=None, sessions_per_query=30,
        logging_quality=0.5, click_model="pbm", devices=["desktop", "mobile"], seed=3,
        output_dir=str(tmp_path / "sim"), num_queries=40)
    stats = pp.run_preprocess(str(tmp_path / "sim" / "*.jsonl.gz"), str(tmp_path / "out"), None, [])
    judged_lines = sum(1 for _ in gzip.open(tmp_path / "sim" / "judged.jsonl.gz"))
    assert stats["lines_read"] == summary["impressions"] + judged_lines
    assert stats["dead_letter"]["total"] == 0
    assert stats["lines_read"] == stats["impressions_valid"]
    assert stats["requests"]["judged"] > 0 and stats["unknown_device"] == 0
    assert (tmp_path / "out" / "truth.json").exists()
    shown = stats["impressions_by_position_device"]
    clicks = stats["clicks_by_position_device"]

    def ctr(position):
        return (sum(clicks[d].get(position, 0) for d in clicks)
                / sum(shown[d].get(position, 0) for d in shown))

    assert ctr("1") > ctr("10") and not math.isnan(ctr("10"))
    assert set(stats["ctr_by_position_device"]) == {"desktop", "mobile"}
