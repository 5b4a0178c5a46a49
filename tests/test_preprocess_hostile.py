"""Hostile input to preprocess (issue 13): every case is a dead letter with a reason or a one-line
RankerError, never a traceback, a hang, a file read twice or a silently changed value."""
from __future__ import annotations

import gzip
import json
import os

import pytest

from pipeline_helpers import DROP, SPEC, SPEC_JSON, dumps, read_dead_letters, record, write_lines
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.pipeline import parse
from ranker.pipeline import preprocess as pp

BOM = b"\xef\xbb\xbf"


def run(pattern, out, **kwargs):
    return pp.run_preprocess(str(pattern), str(out), None, [], **kwargs)


def invariant(stats) -> bool:
    return stats["lines_read"] == (stats["impressions_valid"] + stats["dead_letter"]["total"]
                                   + stats["truncated_impressions"])


def reason_of(raw: bytes) -> str | None:
    _, dead = parse.parse_line(raw, SPEC, "x", 1)
    return dead and dead["reason"]


# --- values --------------------------------------------------------------------------------------

@pytest.mark.parametrize("position", [2**31, 10**30, 2**63, int("9" * 401), 0, -1])
def test_positions_outside_int32_are_invalid_position(position):
    _, dead = parse.parse_line(dumps(record(position=position)), SPEC, "x", 1)
    assert dead["reason"] == parse.INVALID_POSITION and "1..2147483647" in dead["detail"]
    assert reason_of(dumps(record(position=2**31 - 1))) is None


@pytest.mark.parametrize("features", [
    {"price": 1e300}, {"price": -1e39}, {"price": int("9" * 401)}, {"emb": [0.0, 1e39, 1.0]},
    {"emb": [int("9" * 401), 0, 0]}, {"emb": [-3.5e38, 0, 0]}])
def test_numbers_beyond_float32_are_out_of_range(features):
    _, dead = parse.parse_line(dumps(record(features=features)), SPEC, "x", 1)
    assert dead["reason"] == parse.OUT_OF_RANGE and "float32" in dead["detail"]


def test_relevance_beyond_float32_and_largest_float32_kept():
    assert reason_of(dumps(record(clicked=DROP, relevance=1e39))) == parse.OUT_OF_RANGE
    impression, _ = parse.parse_line(dumps(record(features={"price": 3.4e38,
                                                            "emb": [3.4e38, -1, 7]})), SPEC, "x", 1)
    assert impression["features"]["price"] == 3.4e38


def test_whole_run_with_hostile_values_dead_letters_them(tmp_path):
    lines = [dumps(record("ok", 1)),
             dumps(record("big", 10**30)), dumps(record("big2", 2**63)),
             dumps(record("huge", int("9" * 401))), dumps(record("f", 1, features={"price": 1e300})),
             dumps(record("v", 1, features={"emb": [1e39, 0, 0]}))]
    write_lines(tmp_path / "logs" / "a.jsonl", lines)
    stats = run(tmp_path / "logs" / "a.jsonl", tmp_path / "out", max_dead_letter_fraction=1)
    by_reason = stats["dead_letter"]["by_reason"]
    assert by_reason[parse.INVALID_POSITION] == 3 and by_reason[parse.OUT_OF_RANGE] == 2
    assert stats["impressions_valid"] == 1 and invariant(stats)


# --- files ---------------------------------------------------------------------------------------

def test_glob_characters_in_file_names_are_read_once(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "logs[1].jsonl", [dumps(record("a", 1)), dumps(record("a", 2))])
    write_lines(logs / "logs1.jsonl", [dumps(record("b", 1))])
    stats = run(logs / "*.jsonl", tmp_path / "out")
    assert stats["lines_read"] == 3 and stats["dead_letter"]["total"] == 0
    assert sorted(os.path.basename(p) for p in stats["inputs"]) == ["logs1.jsonl", "logs[1].jsonl"]
    literal = run(logs / "logs[1].jsonl", tmp_path / "out2")  # the file named so, not a class
    assert literal["lines_read"] == 2 and literal["requests"]["train"] + \
        literal["requests"]["eval"] == 1


def test_utf8_bom_does_not_dead_letter_the_first_line(tmp_path):
    lines = [dumps(record("r", p)) for p in (1, 2, 3)]
    plain = write_lines(tmp_path / "logs" / "a.jsonl", lines)
    plain.write_bytes(BOM + plain.read_bytes())
    with gzip.GzipFile(tmp_path / "logs" / "b.jsonl.gz", "wb") as fh:
        fh.write(BOM + b"".join(dumps(record("s", p)) + b"\n" for p in (1, 2)))
    stats = run(tmp_path / "logs" / "*", tmp_path / "out")
    assert stats["lines_read"] == 5 and stats["impressions_valid"] == 5
    assert stats["dead_letter"]["total"] == 0


def test_directory_symlink_loops_under_double_star_read_each_file_once(tmp_path):
    logs = tmp_path / "logs"
    write_lines(logs / "a.jsonl", [dumps(record("r", 1)), dumps(record("r", 2))])
    write_lines(logs / "sub" / "b.jsonl", [dumps(record("s", 1))])
    os.symlink(logs, logs / "sub" / "loop")
    os.symlink(logs / "sub", logs / "loop2")
    os.symlink(logs / "a.jsonl", logs / "sub" / "same.jsonl")  # a second name of one file
    stats = run(str(logs) + "/**", tmp_path / "out")
    assert stats["lines_read"] == 3 and stats["dead_letter"]["total"] == 0


def test_parquet_binary_ids_that_are_not_utf8_are_dead_letters(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"request_id": rid, "position": 1, "device_type": "desktop", "item_id": b"i",
             "clicked": 0} for rid in (b"\xff\x01", b"\xfe\x01", b"ok")]
    (tmp_path / "logs").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "logs" / "a.parquet")
    (tmp_path / "logs" / fs.SPEC_FILENAME).write_text(json.dumps(SPEC_JSON))
    stats = run(tmp_path / "logs" / "a.parquet", tmp_path / "out", max_dead_letter_fraction=1)
    assert stats["dead_letter"]["by_reason"][parse.INVALID_UTF8] == 2
    assert stats["requests"]["train"] + stats["requests"]["eval"] == 1  # b"ok" alone, not merged
    assert sorted(d["line"] for d in read_dead_letters(tmp_path / "out")) == [1, 2]


def test_unreadable_file_is_one_line_error(tmp_path, monkeypatch):
    path = write_lines(tmp_path / "logs" / "a.jsonl.gz", [dumps(record())])
    from apache_beam.io.filesystems import FileSystems

    real_open = FileSystems.open

    def denied(name, *args, **kwargs):
        if name == str(path):
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", denied)  # as root, chmod 000 would still read
    with pytest.raises(RankerError, match=r"a\.jsonl\.gz: cannot read \(Permission denied\)"):
        run(path, tmp_path / "out")
    monkeypatch.undo()
    if os.geteuid() != 0:
        path.chmod(0)
        with pytest.raises(RankerError, match="cannot read"):
            run(path, tmp_path / "out")


def test_long_feature_name_is_one_line_error(tmp_path):
    spec = dict(SPEC_JSON, context=[{"name": "q" * 300, "kind": "categorical"}])
    path = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record())], spec=spec)
    with pytest.raises(RankerError, match="cannot name its vocabulary file") as err:
        run(path, tmp_path / "out")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_output_that_is_a_file_or_the_input_folder_is_refused(tmp_path):
    path = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record())])
    (tmp_path / "file").write_text("x")
    with pytest.raises(RankerError, match="is a file, not a folder"):
        run(path, tmp_path / "file")
    for out in (tmp_path / "logs", tmp_path / "logs" / "out"):
        with pytest.raises(RankerError, match="input folder"):
            run(path, out)
    assert json.loads((tmp_path / "logs" / fs.SPEC_FILENAME).read_text()) == SPEC_JSON


@pytest.mark.parametrize("url,extra", [("gs://bucket/logs/*.jsonl", "gcp"),
                                       ("s3://bucket/logs/*.jsonl", "aws")])
def test_remote_path_without_its_extra_names_the_extra(tmp_path, url, extra, monkeypatch):
    import importlib

    real = importlib.import_module

    def without_clients(name, *args):
        if name in ("google.cloud.storage", "boto3"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_clients)
    with pytest.raises(RankerError, match=rf"pip install 'ranker\[{extra}\]'"):
        run(url, tmp_path / "out")
    path = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record())])
    with pytest.raises(RankerError, match=rf"--output .*ranker\[{extra}\]"):
        run(path, url.rsplit("/", 1)[0] + "/out")
    assert not (tmp_path / "gs:").exists() and not (tmp_path / "s3:").exists()
