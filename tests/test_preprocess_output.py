"""preprocess output: truncation of long click lists, the dead-letter threshold, output replaced
only by a run that succeeded, stats.json order and per-feature statistics."""
from __future__ import annotations

import json
import math

import pytest

from pipeline_helpers import (
    DROP, SPEC, SPEC_JSON, dumps, read_dead_letters, read_records, record, write_lines)
from ranker.errors import RankerError
from ranker.pipeline import parse
from ranker.pipeline import preprocess as pp
from ranker.pipeline.lists import SPLITS


def run(pattern, out, **kwargs):
    return pp.run_preprocess(str(pattern), str(out), None, [], **kwargs)


def test_long_click_list_keeps_its_first_positions_and_counts_the_rest(tmp_path):
    size = SPEC.max_list_size
    lines = [dumps(record("deep", p, clicked=int(p == size + 2))) for p in range(size + 3, 0, -1)]
    lines += [dumps(record("short", 1))]
    lines += [dumps(record("judged", p, clicked=DROP, relevance=p)) for p in range(1, size + 2)]
    write_lines(tmp_path / "logs" / "a.jsonl", lines)
    stats = run(tmp_path / "logs" / "a.jsonl", tmp_path / "out", max_dead_letter_fraction=1)
    assert stats["truncated_impressions"] == 3 and stats["lists_truncated"] == 1
    assert stats["impressions_valid"] == size + 1
    assert stats["dead_letter"]["by_reason"][parse.LIST_TOO_LONG] == size + 1  # judged: whole
    assert stats["lines_read"] == len(lines) == (stats["impressions_valid"] + stats["dead_letter"][
        "total"] + stats["truncated_impressions"])
    shown = stats["impressions_by_position_device"]["desktop"]
    assert list(shown) == [str(p) for p in range(1, size + 1)]  # position 6+ cut, numeric order


def test_too_many_dead_letters_fail_and_keep_the_previous_output(tmp_path, capsys):
    from ranker.cli import main

    good = [dumps(record(f"r{i}", 1)) for i in range(20)]
    logs = write_lines(tmp_path / "logs" / "a.jsonl", good)
    out = tmp_path / "out"
    first = run(logs, out)
    before = {s: read_records(out, s) for s in SPLITS}
    stats_before = (out / "stats.json").read_text()
    logs.write_bytes(b"".join(line + b"\n" for line in good[:5] + [b"{oops"] * 3))
    code = main(["preprocess", "--input", str(logs), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("ranker preprocess: error: 3 of 8 lines (37.5%)")
    assert "--max-dead-letter-fraction 0.1" in err[-1]
    assert {s: read_records(out, s) for s in SPLITS} == before and before["train"]
    assert (out / "stats.json").read_text() == stats_before and first["lines_read"] == 20
    rejected = tmp_path / "out.rejected"
    assert len(read_dead_letters(rejected)) == 3
    assert not list(tmp_path.glob("out.staging*"))
    assert main(["preprocess", "--input", str(logs), "--output", str(out),
                 "--max-dead-letter-fraction", "0.5"]) == 0
    assert json.loads((out / "stats.json").read_text())["lines_read"] == 8


def test_a_failed_run_leaves_the_previous_output(tmp_path, monkeypatch):
    logs = write_lines(tmp_path / "logs" / "a.jsonl", [dumps(record(f"r{i}", 1)) for i in range(9)])
    out = tmp_path / "out"
    run(logs, out)
    (out / "notes.txt").write_text("mine")  # not preprocess's: always kept
    before = {s: read_records(out, s) for s in SPLITS}

    def broken(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(pp, "finish_output", broken)
    with pytest.raises(RuntimeError, match="worker died"):
        run(logs, out)
    assert {s: read_records(out, s) for s in SPLITS} == before
    assert (out / "stats.json").exists() and (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob("out.staging*"))
    with pytest.raises(RankerError, match=r"must be in \[0, 1\]"):
        run(logs, out, max_dead_letter_fraction=1.5)


def test_stats_positions_in_numeric_order_and_feature_statistics(tmp_path):
    spec = dict(SPEC_JSON, max_list_size=12)
    lines = [dumps(record("a", p, features={"brand": f"b{p % 3}", "price": float(p),
                                            "emb": [p, -p, 0]})) for p in range(1, 13)]
    lines += [dumps(record("b", 1, context={}, features={"price": 100}))]
    write_lines(tmp_path / "logs" / "a.jsonl", lines, spec=spec)
    run(tmp_path / "logs" / "a.jsonl", tmp_path / "out")
    text = (tmp_path / "out" / "stats.json").read_text()
    stats = json.loads(text)
    assert list(stats["ctr_by_position_device"]["desktop"]) == [str(p) for p in range(1, 13)]
    assert text.index('"2": ') < text.index('"10": ')
    features = stats["features"]
    assert features["price"] == {"scope": "item", "kind": "numeric", "rows": 13, "present": 13,
                                 "missing": 0, "missing_rate": 0.0, "min": 1.0, "max": 100.0,
                                 "mean": (78 + 100) / 13}
    assert features["brand"]["distinct"] == 3 and features["brand"]["missing"] == 1
    assert math.isclose(features["brand"]["missing_rate"], 1 / 13)
    assert features["query"] == {"scope": "context", "kind": "categorical", "rows": 2,
                                 "present": 1, "missing": 1, "missing_rate": 0.5, "distinct": 1}
    emb = features["emb"]
    assert (emb["min"], emb["max"], emb["mean"], emb["length"], emb["present"]) == \
        (-12.0, 12.0, 0.0, 3, 12)
