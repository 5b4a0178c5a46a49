"""The click simulator: reproducible files in the SPEC log schema, clicks that follow the declared
examination curves, a logging policy whose quality means what it says, and both LETOR layouts."""
from __future__ import annotations

import collections
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pytest

from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import devices as dv
from ranker.simulation import letor as lt
from ranker.simulation import sessions as ss
from ranker.simulation import simulate as sm
from ranker.simulation import synthetic, worlds
from ranker.simulation.options import NUM_SHOWN

YAHOO = Path(__file__).resolve().parents[2] / "shared/data/yahoo_ltr_sample"
DEVICES = ["desktop", "mobile", "tablet"]
TRUTH_KEYS = {"world", "click_model", "logging_quality", "click_noise", "max_relevance", "devices",
              "device_share", "examination", "propensity", "sessions_per_query", "queries",
              "impressions", "clicks", "seed"}
FILES = (sm.IMPRESSIONS_FILE, sm.JUDGED_FILE, fs.SPEC_FILENAME, sm.TRUTH_FILE)


def run(out: Path, **kwargs) -> dict:
    args = dict(world="synthetic", letor_train=None, letor_test=None, sessions_per_query=5,
                logging_quality=0.5, click_model="pbm", devices=DEVICES, seed=0,
                output_dir=str(out), num_queries=40)
    args.update(kwargs)
    return sm.simulate_to_dir(**args)


def read_lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def yahoo() -> Path:
    if not (YAHOO / "rank.train").exists():
        pytest.skip(f"shared Yahoo LTR sample not found at {YAHOO}")
    return YAHOO


@pytest.fixture(scope="module")
def big_random_log(tmp_path_factory):
    """~200k PBM impressions at logging quality 0, the columns the statistical tests need.

    Parsed with pyarrow's JSON reader (json.loads per line would take seconds here)."""
    out = tmp_path_factory.mktemp("big")
    summary = run(out, num_queries=2000, sessions_per_query=10, logging_quality=0.0, seed=7)
    truth = json.loads((out / sm.TRUTH_FILE).read_text())
    schema = pa.schema([(fs.DEVICE, pa.string()), (fs.POSITION, pa.int64()),
                        (fs.CLICKED, pa.int64()), (fs.RELEVANCE, pa.float64())])
    with gzip.open(out / sm.IMPRESSIONS_FILE) as fh:
        table = pa_json.read_json(io.BytesIO(fh.read()), parse_options=pa_json.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="ignore"))
    columns = {name: table[name].to_numpy(zero_copy_only=False) for name in schema.names}
    return summary, truth, columns


# --- reproducibility -----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name in ("a", "b"):
        run(tmp_path / name, seed=3, click_model="cascade")
    run(tmp_path / "c", seed=4, click_model="cascade")
    for f in FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert ((tmp_path / "a" / sm.IMPRESSIONS_FILE).read_bytes()
            != (tmp_path / "c" / sm.IMPRESSIONS_FILE).read_bytes())


# --- schema --------------------------------------------------------------------------------------


def check_features(obj: dict, features, where: str) -> None:
    for f in features:
        value = obj[f.name]
        if f.kind == fs.CATEGORICAL:
            assert isinstance(value, str), where
        elif f.kind == fs.NUMERIC:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        else:
            assert isinstance(value, list) and len(value) == f.length, where
            assert all(isinstance(v, (int, float)) for v in value), where


@pytest.mark.parametrize("click_model", ["pbm", "cascade"])
def test_every_line_matches_the_log_schema(tmp_path, click_model):
    summary = run(tmp_path, click_model=click_model)
    spec = fs.load_spec(str(tmp_path / fs.SPEC_FILENAME))
    lines = read_lines(tmp_path / sm.IMPRESSIONS_FILE)
    assert len(lines) == summary["impressions"] == 40 * 5 * NUM_SHOWN
    assert sum(line[fs.CLICKED] for line in lines) == summary["clicks"]
    sessions = collections.defaultdict(list)
    for line in lines:
        for key, kind in ((fs.REQUEST_ID, str), (fs.DEVICE, str), (fs.ITEM_ID, str),
                          (fs.POSITION, int), (fs.TIMESTAMP, int), ("context", dict),
                          ("features", dict)):
            assert isinstance(line[key], kind), (key, line)
        assert line[fs.CLICKED] in (0, 1) and isinstance(line[fs.RELEVANCE], (int, float))
        assert 0 <= line[fs.RELEVANCE] <= 4 and 1 <= line[fs.POSITION] <= NUM_SHOWN
        assert line[fs.DEVICE] in DEVICES
        assert line["context"][worlds.QUERY_ID]
        check_features(line["context"], spec.context, "context")
        check_features(line["features"], spec.item, "features")
        sessions[line[fs.REQUEST_ID]].append(line)
    assert len(sessions) == summary["sessions"] == 40 * 5
    for rid, imps in sessions.items():
        assert sorted(i[fs.POSITION] for i in imps) == list(range(1, len(imps) + 1)), rid
        assert len({i[fs.ITEM_ID] for i in imps}) == len(imps), rid
        assert len({(i[fs.DEVICE], i[fs.TIMESTAMP], i["context"][worlds.QUERY_ID]) for i in imps}) == 1
        if click_model == "cascade":
            assert sum(i[fs.CLICKED] for i in imps) <= 1, "a cascade user stops after a click"

    judged = read_lines(tmp_path / sm.JUDGED_FILE)
    lists = collections.defaultdict(list)
    for line in judged:
        assert fs.CLICKED not in line and line[fs.DEVICE] == dv.JUDGED_DEVICE
        assert line[fs.REQUEST_ID].startswith("judged-")
        check_features(line["features"], spec.item, "judged features")
        lists[line[fs.REQUEST_ID]].append(line[fs.POSITION])
    assert len(lists) == summary["judged_queries"] == 10
    assert all(sorted(p) == list(range(1, len(p) + 1)) for p in lists.values())
    longest = max(len(p) for p in lists.values())
    assert synthetic.CANDIDATES[0] <= longest
    assert spec.max_list_size == max(longest, NUM_SHOWN) + worlds.LIST_SIZE_MARGIN
    logged_items = {line[fs.ITEM_ID] for line in lines}
    assert not logged_items & {line[fs.ITEM_ID] for line in judged}, "judged queries are held out"

    truth = json.loads((tmp_path / sm.TRUTH_FILE).read_text())
    assert TRUTH_KEYS <= set(truth)
    assert truth["impressions"] == len(lines) and truth["queries"] == {"logged": 40, "judged": 10}
    for dev in DEVICES:
        assert len(truth["examination_rate"][dev]) == NUM_SHOWN
        if click_model == "pbm":
            assert len(truth["examination"][dev]) == NUM_SHOWN and truth["propensity"][dev][0] == 1.0
    if click_model == "cascade":
        assert truth["propensity"] is None
    assert json.loads((tmp_path / sm.SUMMARY_FILE).read_text())["impressions"] == len(lines)


def test_synthetic_labels_are_skewed_graded_0_to_4(tmp_path):
    world = synthetic.synthetic_world(400, 100, np.random.default_rng(0))
    counts = np.bincount(world.logged.relevance.astype(int), minlength=5)
    assert counts.sum() == world.logged.num_items and len(counts) == 5
    assert counts[0] > counts[2] > counts[4] > 0 and counts[0] + counts[1] > 0.6 * counts.sum()
    assert world.judged.num_queries == 100
    assert np.all((world.logged.lengths >= 15) & (world.logged.lengths <= 20))


# --- clicks follow the declared examination -------------------------------------------------------


def test_position_ctr_ratio_tracks_truth_propensity(big_random_log):
    # Logging quality 0: the order is independent of true relevance (the stale error is uniform
    # within every grade), so every position holds equally attractive items on average and
    # CTR(k)/CTR(1) of a device estimates p(seen|k)/p(seen|1) alone. At W > 0 better items sit on
    # top and the ratio would mix examination with relevance.
    summary, truth, log = big_random_log
    assert summary["impressions"] == len(log[fs.POSITION]) >= 190_000
    for dev in DEVICES:
        on = log[fs.DEVICE] == dev
        shown = np.bincount(log[fs.POSITION][on], minlength=11)[1:]
        n_clicks = np.bincount(log[fs.POSITION][on], weights=log[fs.CLICKED][on], minlength=11)[1:]
        ctr = n_clicks / shown
        ratio = ctr / ctr[0]
        # Poisson error of both click counts, plus 8% for which items a finite world put where.
        tolerance = 4 * ratio * np.sqrt(1 / n_clicks + 1 / n_clicks[0]) + 0.08 * ratio
        expected = np.array(truth["propensity"][dev])
        assert np.all(np.abs(ratio - expected) <= tolerance), (dev, ratio.round(3), expected.round(3))
    # The curves really differ: mobile is steep, desktop shallow.
    assert truth["propensity"]["mobile"][4] < truth["propensity"]["tablet"][4] < truth["propensity"]["desktop"][4]


def test_mean_relevance_by_position_follows_logging_quality(big_random_log):
    _, _, log = big_random_log
    n = np.bincount(log[fs.POSITION], minlength=11)[1:]
    flat = np.bincount(log[fs.POSITION], weights=log[fs.RELEVANCE], minlength=11)[1:] / n
    # Items are fixed per query, so the noise is that of 2000 queries, not of 200k impressions.
    assert np.ptp(flat) < 0.12, flat.round(3)

    world = synthetic.synthetic_world(1000, 1, np.random.default_rng(1))
    by_pos = np.zeros(10)
    count = np.zeros(10)
    for block in ss.simulate_sessions(world.logged, 5, 1.0, "pbm", dv.parse_devices(DEVICES), 4.0,
                                      np.random.default_rng(2)):
        by_pos += world.logged.relevance[block.shown].sum(axis=0)
        count += block.valid.sum(axis=0)
    sorted_means = by_pos / count
    assert np.all(np.diff(sorted_means) < 0), sorted_means.round(3)
    assert sorted_means[0] - sorted_means[-1] > 1.5


def test_cascade_truth_has_an_examination_rate_not_a_propensity(tmp_path):
    run(tmp_path, click_model="cascade", num_queries=100, sessions_per_query=20)
    truth = json.loads((tmp_path / sm.TRUTH_FILE).read_text())
    assert truth["propensity"] is None and truth["examination"] is None
    for dev in DEVICES:
        rate = np.array(truth["examination_rate"][dev])
        scan = np.array(truth["scan_curve"][dev])
        assert rate[0] == 1.0 and np.all(np.diff(rate) <= 0)
        assert np.all(rate <= scan + 1e-12)
        assert rate[1] < scan[1]  # clicks on top ended some scans early


def test_devices_shares_and_unknown_devices():
    def shares(entries):
        return {d.name: d.share for d in dv.parse_devices(entries)}

    assert shares(DEVICES) == pytest.approx({"desktop": 0.5, "mobile": 0.35, "tablet": 0.15})
    assert shares(["mobile", "tablet"]) == pytest.approx({"mobile": 0.7, "tablet": 0.3})
    assert shares(["tv", "watch"]) == pytest.approx({"tv": 0.5, "watch": 0.5})
    tv, mobile = dv.parse_devices(["tv", "mobile"])
    assert tv.eta == 1.0 and tv.examination[1] == pytest.approx(0.5)  # unknown devices: η = 1
    assert mobile.examination[3] == pytest.approx(0.125)
    with pytest.raises(RankerError):
        dv.parse_devices(["desktop", "desktop"])
    with pytest.raises(RankerError):
        dv.parse_devices(["bad name"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(logging_quality=1.5), "logging-quality"),
    (dict(logging_quality=-0.1), "logging-quality"),
    (dict(world="letor"), "letor-train"),
    (dict(world="letor", letor_train="/nonexistent/rank.train"), "not found"),
    (dict(devices=[]), "devices"),
    (dict(devices=["desktop", "unknown"]), "reserved"),
    (dict(sessions_per_query=0), "sessions-per-query"),
    (dict(click_model="dbn"), "click-model"),
    (dict(num_queries=0), "num-queries"),
])
def test_bad_arguments_raise_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(RankerError, match=message) as err:
        run(tmp_path / "out", **kwargs)
    assert "\n" not in str(err.value)


# --- LETOR readers and world ----------------------------------------------------------------------


def test_group_file_reader_on_yahoo_sample():
    data = yahoo()
    train = lt.read_letor(str(data / "rank.train"))
    test = lt.read_letor(str(data / "rank.test"))
    assert not train.has_qid and train.group_file.endswith("rank.train.query")
    assert (train.num_queries, train.num_docs) == (201, 3005)
    assert (test.num_queries, test.num_docs) == (50, 768)
    assert np.bincount(train.labels.astype(int)).tolist() == [645, 1211, 858, 222, 69]
    assert np.diff(train.offsets).min() >= 1 and train.offsets[-1] == 3005
    assert lt.vector_width([train, test]) == (300, False)
    dense = train.dense(300)
    assert dense.shape == (3005, 300) and dense[0, 9] == pytest.approx(0.89)  # "10:0.89" on line 1


def test_qid_reader_with_comments_and_interleaved_queries(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text(
        "# a header comment\n"
        "2 qid:10 1:0.5 3:1.0 # docid = GX000-00\n"
        "0 qid:10 2:0.25\n"
        "\n"
        "1 qid:7 1:1 4:0.75 #docid = GX001\n"
        "4 qid:10 4:2\n"
    )
    data = lt.read_letor(str(path))
    assert data.has_qid and data.query_ids == ["10", "7"]
    assert data.offsets.tolist() == [0, 3, 4]
    assert data.labels.tolist() == [2, 0, 4, 1]
    dense = data.dense(4)
    assert dense.tolist() == [[0.5, 0, 1.0, 0], [0, 0.25, 0, 0], [0, 0, 0, 2.0], [1.0, 0, 0, 0.75]]


def test_letor_reader_errors(tmp_path):
    data = tmp_path / "g.txt"
    data.write_text("1 1:0.5\n0 2:0.1\n3 1:0.2\n")
    with pytest.raises(RankerError, match="group file"):
        lt.read_letor(str(data))  # no qid and no g.txt.query
    (tmp_path / "g.txt.query").write_text("2\n2\n")
    with pytest.raises(RankerError, match="sum to 4 but"):
        lt.read_letor(str(data))
    (tmp_path / "g.txt.query").write_text("2\n1\n")
    assert lt.read_letor(str(data)).offsets.tolist() == [0, 2, 3]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("1 qid:1 1:0.5\n0 2:0.1\n")
    with pytest.raises(RankerError, match="mixes"):
        lt.read_letor(str(mixed))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 qid:1 1:0.5\n0 qid:1 2=0.1\n")
    with pytest.raises(RankerError, match=r"bad.txt:2: expected 'index:value'"):
        lt.read_letor(str(bad))


def test_letor_world_end_to_end_on_yahoo_sample(tmp_path):
    data = yahoo()
    summary = run(tmp_path, world="letor", letor_train=str(data / "rank.train"),
                  letor_test=str(data / "rank.test"), sessions_per_query=2, num_queries=5)
    assert summary["logged_queries"] == 201 and summary["judged_queries"] == 50
    assert summary["judged_items"] == 768
    spec = fs.load_spec(str(tmp_path / fs.SPEC_FILENAME))
    assert spec.context == ()
    (feature,) = spec.item
    assert (feature.name, feature.kind, feature.length) == (worlds.LETOR_FEATURES, fs.VECTOR, 300)
    assert spec.max_list_size >= 24
    lines = read_lines(tmp_path / sm.IMPRESSIONS_FILE)
    assert len(lines) == summary["impressions"] == 2 * sum(min(10, n) for n in _yahoo_sizes(data))
    assert all(len(l["features"][worlds.LETOR_FEATURES]) == 300 for l in lines[:50])
    assert lines[0]["context"] == {worlds.QUERY_ID: "train-0"}
    judged = read_lines(tmp_path / sm.JUDGED_FILE)
    assert len(judged) == 768 and all(fs.CLICKED not in l for l in judged)
    assert len({l[fs.REQUEST_ID] for l in judged}) == 50
    truth = json.loads((tmp_path / sm.TRUTH_FILE).read_text())
    assert truth["world"] == "letor" and truth["max_relevance"] == 4


def test_letor_world_without_test_file_writes_no_judged_lists(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("".join(f"{(q + d) % 3} qid:{q} 1:{d / 10} 2:{q}\n" for q in range(4) for d in range(12)))
    summary = run(tmp_path / "out", world="letor", letor_train=str(path), sessions_per_query=3)
    assert summary["judged_path"] is None and summary["judged_queries"] == 0
    assert not (tmp_path / "out" / sm.JUDGED_FILE).exists()
    assert summary["impressions"] == 4 * 3 * 10
    truth = json.loads((tmp_path / "out" / sm.TRUTH_FILE).read_text())
    assert truth["max_relevance"] == 2


def _yahoo_sizes(data: Path) -> list[int]:
    return [int(x) for x in (data / "rank.train.query").read_text().split()]


def test_examine_all_gives_the_same_sessions_without_position_bias(tmp_path):
    """The unbiased-clicks reference: same rankings and devices, clicks free of examination."""
    def lines(out, **kw):
        sm.simulate_to_dir(world="synthetic", sessions_per_query=5, logging_quality=0.5,
                           click_model="pbm", devices=["desktop", "mobile"], seed=3,
                           output_dir=str(out), num_queries=40, **kw)
        with gzip.open(out / "impressions.jsonl.gz", "rt") as fh:
            return [json.loads(line) for line in fh]

    biased = lines(tmp_path / "biased")
    unbiased = lines(tmp_path / "unbiased", examine_all=True)
    key = lambda r: (r["request_id"], r["position"], r["item_id"], r["device_type"])  # noqa: E731
    assert [key(r) for r in biased] == [key(r) for r in unbiased]
    assert sum(r["clicked"] for r in unbiased) > 1.3 * sum(r["clicked"] for r in biased)
    truth = json.loads((tmp_path / "unbiased" / "truth.json").read_text())
    assert truth["examine_all"] and truth["propensity"]["mobile"] == [1.0] * 10
