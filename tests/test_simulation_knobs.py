"""The simulator's knobs: devices as data, explicit curves, position-1 examination, trust bias,
judged counts, examine-all under cascade, oracle lists, the ids world, long judged lists and
escaping of ids taken from the data."""
from __future__ import annotations

import collections
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from ranker import cli
from ranker.errors import RankerError
from ranker.features import spec as fs
from ranker.simulation import devices as dv
from ranker.simulation import idworld, worlds
from ranker.simulation import simulate as sm
from ranker.simulation.options import CLICK_NOISE, NUM_SHOWN, SimulateOptions

PHONES = "ios:0.5:1.2,android:0.3:0.9,web:0.2:0.5"


WORLD = dict(world="synthetic", letor_train=None, letor_test=None, sessions_per_query=5,
             logging_quality=0.5, click_model="pbm", devices=PHONES, seed=0, num_queries=40)


def run(out: Path, **kwargs) -> dict:
    return sm.simulate_to_dir(**{**WORLD, "output_dir": str(out), **kwargs})


def read_lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def truth_of(out: Path) -> dict:
    return json.loads((out / sm.TRUTH_FILE).read_text())


def ctr_by(lines: list[dict], key, where=lambda line: True) -> dict:
    shown, clicks = collections.Counter(), collections.Counter()
    for line in lines:
        if where(line):
            shown[key(line)] += 1
            clicks[key(line)] += line[fs.CLICKED]
    return {k: clicks[k] / shown[k] for k in shown}


# --- devices --------------------------------------------------------------------------------------


def test_device_shares_and_etas_are_honoured(tmp_path):
    run(tmp_path, num_queries=100, sessions_per_query=30, logging_quality=0.0)
    lines = read_lines(tmp_path / sm.IMPRESSIONS_FILE)
    sessions = {line[fs.REQUEST_ID]: line[fs.DEVICE] for line in lines}
    counts = collections.Counter(sessions.values())
    for name, share in (("ios", 0.5), ("android", 0.3), ("web", 0.2)):
        assert abs(counts[name] / len(sessions) - share) < 0.03, counts
    truth = truth_of(tmp_path)
    assert truth["device_share"] == pytest.approx({"ios": 0.5, "android": 0.3, "web": 0.2})
    assert truth["device_eta"] == {"ios": 1.2, "android": 0.9, "web": 0.5}
    assert truth["propensity"]["ios"][2] == pytest.approx(3 ** -1.2)
    # At logging quality 0 the CTR ratio by position follows (1/k)^η per device: steeper for ios.
    ratio = {}
    for name in ("ios", "web"):
        ctr = ctr_by(lines, lambda line: line[fs.POSITION], lambda line, n=name: line[fs.DEVICE] == n)
        ratio[name] = (ctr[4] + ctr[5]) / (2 * ctr[1])
        expected = (4 ** -truth["device_eta"][name] + 5 ** -truth["device_eta"][name]) / 2
        assert abs(ratio[name] - expected) < 0.12, (name, ratio[name], expected)
    assert ratio["ios"] < ratio["web"] - 0.2


def test_plain_names_mix_with_explicit_entries():
    (desk, tv) = dv.parse_devices("desktop,tv::2")
    assert (desk.eta, tv.eta) == (0.5, 2.0)
    assert desk.share == pytest.approx(0.5 / 1.0) and tv.share == pytest.approx(0.5)


def test_explicit_curve_and_trust_bias_shape_clicks_on_irrelevant_items(tmp_path):
    curve = tmp_path / "flat.json"
    curve.write_text(json.dumps({"web": [1.0] * 12}))
    out = tmp_path / "out"
    run(out, devices="web", examination_curve=str(curve), trust_bias=4.0, logging_quality=0.0,
        num_queries=200, sessions_per_query=20)
    truth = truth_of(out)
    assert truth["device_eta"] == {"web": None} and truth["propensity"]["web"] == [1.0] * NUM_SHOWN
    assert truth["trust_bias"] == 4.0 and truth["trust_bias_form"].startswith("eps_k = eps * (1 + T / k)")
    noise = [CLICK_NOISE * (1 + 4.0 / k) for k in range(1, NUM_SHOWN + 1)]
    assert truth["click_noise_by_position"] == pytest.approx(noise)
    lines = read_lines(out / sm.IMPRESSIONS_FILE)
    # Everything is examined, so the CTR of grade-0 items at position k is ε_k itself.
    ctr = ctr_by(lines, lambda line: line[fs.POSITION], lambda line: line[fs.RELEVANCE] == 0)
    assert abs(ctr[1] - noise[0]) < 0.04 and abs(ctr[10] - noise[9]) < 0.025, ctr
    assert ctr[1] > 2.5 * ctr[10]
    best = ctr_by(lines, lambda line: 0, lambda line: line[fs.RELEVANCE] == 4)
    assert best[0] == 1.0  # the gain of the top grade is 1 whatever the noise


def test_top_examination_scales_position_one(tmp_path):
    ctr = {}
    for name, top in (("full", 1.0), ("half", 0.5)):
        run(tmp_path / name, top_examination=top, num_queries=100, sessions_per_query=20)
        ctr[name] = truth_of(tmp_path / name)["ctr_by_position"]
    for device in ("ios", "android", "web"):
        assert 0.4 < ctr["half"][device][0] / ctr["full"][device][0] < 0.6, device
    truth = truth_of(tmp_path / "half")
    assert truth["top_examination"] == 0.5 and truth["examination"]["web"][0] == 0.5
    assert truth["propensity"]["web"][0] == 1.0
    assert truth["propensity"]["web"][3] == pytest.approx(4 ** -0.5)


# --- judged lists, examine-all, oracle lists ---------------------------------------------------------


@pytest.mark.parametrize("world, num_judged", [("synthetic", 7), ("ids", 5), ("synthetic", 0)])
def test_num_judged(tmp_path, world, num_judged):
    summary = run(tmp_path, world=world, num_judged=num_judged)
    assert summary["judged_queries"] == num_judged == truth_of(tmp_path)["queries"]["judged"]
    if num_judged:
        judged = read_lines(tmp_path / sm.JUDGED_FILE)
        assert len({line[fs.REQUEST_ID] for line in judged}) == num_judged
    else:
        assert summary["judged_path"] is None and not (tmp_path / sm.JUDGED_FILE).exists()
    assert run(tmp_path / "default", world=world)["judged_queries"] == 10  # 25% of 40


def test_examine_all_under_cascade_examines_everything(tmp_path):
    run(tmp_path, click_model="cascade", examine_all=True, trust_bias=3.0, top_examination=0.5)
    truth = truth_of(tmp_path)
    assert truth["examine_all"] and "every shown item is examined" in truth["examination_note"]
    for name in ("ios", "android", "web"):
        assert truth["examination_rate"][name][9] == 1.0
        assert truth["propensity"][name] == truth["examination"][name] == [1.0] * NUM_SHOWN
    assert "scan_curve" not in truth and truth["trust_bias"] == 0.0 and truth["top_examination"] == 1.0
    lines = read_lines(tmp_path / sm.IMPRESSIONS_FILE)
    per_session = collections.Counter(line[fs.REQUEST_ID] for line in lines if line[fs.CLICKED])
    assert max(per_session.values()) > 1, "no stop after a click"


def test_oracle_lists_hold_each_logged_candidate_once(tmp_path):
    summary = run(tmp_path, oracle_lists=True)
    opts = SimulateOptions(world="synthetic", letor_train=None, letor_test=None, sessions_per_query=5,
                           logging_quality=0.5, click_model="pbm", devices=(), seed=0,
                           output_dir="", num_queries=40)
    world = sm.build_world(opts, np.random.default_rng(0).spawn(2)[0])
    oracle_dir = Path(summary["oracle_dir"])
    lines = read_lines(oracle_dir / sm.JUDGED_FILE)
    assert len(lines) == world.logged.num_items
    grades = {(line["context"][worlds.QUERY_ID], line[fs.ITEM_ID]): line[fs.RELEVANCE] for line in lines}
    truth = {(world.logged.context[q][worlds.QUERY_ID], world.logged.item_ids[i]): world.logged.relevance[i]
             for q in range(world.logged.num_queries)
             for i in range(world.logged.offsets[q], world.logged.offsets[q + 1])}
    assert grades == truth
    assert all(fs.CLICKED not in line and line[fs.DEVICE] == "unknown" for line in lines)
    lists = collections.defaultdict(list)
    for line in lines:
        lists[line[fs.REQUEST_ID]].append(line[fs.POSITION])
    assert len(lists) == 40 and all(sorted(p) == list(range(1, len(p) + 1)) for p in lists.values())
    spec = fs.load_spec(str(oracle_dir / fs.SPEC_FILENAME))
    assert spec.max_list_size >= max(len(p) for p in lists.values())
    assert (oracle_dir / sm.TRUTH_FILE).read_bytes() == (tmp_path / sm.TRUTH_FILE).read_bytes()
    for line in read_lines(tmp_path / sm.IMPRESSIONS_FILE):
        assert grades[(line["context"][worlds.QUERY_ID], line[fs.ITEM_ID])] == line[fs.RELEVANCE]


@pytest.mark.slow
def test_oracle_lists_preprocess_into_a_judged_split(tmp_path):
    from ranker.pipeline import preprocess

    summary = run(tmp_path / "sim", oracle_lists=True)
    stats = preprocess.run_preprocess(str(tmp_path / "sim" / sm.ORACLE_DIR / "*.jsonl.gz"),
                                      str(tmp_path / "data"), None, [])
    assert stats["requests"]["judged"] == summary["logged_queries"] == 40
    assert stats["dead_letter"]["total"] == 0 and stats["requests"]["train"] == 0


# --- the ids world --------------------------------------------------------------------------------


def test_ids_world_has_only_ids_and_a_cross(tmp_path):
    summary = run(tmp_path, world="ids", num_queries=60, sessions_per_query=10)
    spec = fs.load_spec(str(tmp_path / fs.SPEC_FILENAME))
    assert [(f.name, f.kind) for f in spec.context] == [(worlds.QUERY_ID, fs.CATEGORICAL)]
    assert [(f.name, f.kind) for f in spec.item] == [(idworld.DOC_ID, fs.CATEGORICAL)]
    (cross,) = spec.crosses
    assert cross.features == (worlds.QUERY_ID, idworld.DOC_ID) and cross.hash_buckets >= 4 * 600
    lines = read_lines(tmp_path / sm.IMPRESSIONS_FILE)
    assert all(set(line["features"]) == {idworld.DOC_ID} and set(line["context"]) == {worlds.QUERY_ID}
               and line["features"][idworld.DOC_ID] == line[fs.ITEM_ID] for line in lines)
    queries_of_doc = collections.defaultdict(set)
    grade = {}
    for line in lines:
        queries_of_doc[line[fs.ITEM_ID]].add(line["context"][worlds.QUERY_ID])
        grade[(line["context"][worlds.QUERY_ID], line[fs.ITEM_ID])] = line[fs.RELEVANCE]
    assert max(len(q) for q in queries_of_doc.values()) >= 5, "docs are shared across queries"
    assert summary["sessions"] == 600
    # Judged lists: full lists of logged queries, grades as in the logs.
    judged = read_lines(tmp_path / sm.JUDGED_FILE)
    assert {line["context"][worlds.QUERY_ID] for line in judged} <= {k[0] for k in grade}
    shared = [(line["context"][worlds.QUERY_ID], line[fs.ITEM_ID]) for line in judged]
    assert all(grade[k] == line[fs.RELEVANCE] for k, line in zip(shared, judged) if k in grade)
    sizes = collections.Counter(line[fs.REQUEST_ID] for line in judged).values()
    assert min(sizes) >= idworld.CANDIDATES[0] and max(sizes) <= idworld.CANDIDATES[1]


def test_ids_world_grades_and_spec_without_crosses():
    world = idworld.ids_world(300, 20, np.random.default_rng(5))
    shares = np.bincount(world.logged.relevance.astype(int), minlength=5) / world.logged.num_items
    assert shares == pytest.approx(worlds.LABEL_SHARES, abs=0.01)
    bare = idworld.ids_spec_json(24, 100)
    del bare["crosses"]
    assert fs.parse_spec(bare).crosses == ()
    assert len(fs.parse_spec(idworld.ids_spec_json(24, 100)).crosses) == 1


# --- issue 13/14: long judged lists, escaped ids ----------------------------------------------------


def test_long_letor_judged_lists_fit_the_spec_and_odd_qids_stay_json(tmp_path):
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    odd = 'a"b\\c'
    train.write_text("".join(f"{d % 3} qid:{odd} 1:{d / 10} 2:{d % 5}\n" for d in range(12)))
    test.write_text("".join(f"{d % 4} qid:t{q} 1:{d / 70} 2:{q}\n"
                            for q, n in ((1, 73), (2, 20)) for d in range(n)))
    summary = run(tmp_path / "out", world="letor", letor_train=str(train), letor_test=str(test),
                  devices="desktop")
    spec = fs.load_spec(str(tmp_path / "out" / fs.SPEC_FILENAME))
    assert spec.max_list_size >= 73 > fs.DEFAULT_MAX_LIST_SIZE
    assert summary["judged_items"] == 93 == len(read_lines(tmp_path / "out" / sm.JUDGED_FILE))
    lines = read_lines(tmp_path / "out" / sm.IMPRESSIONS_FILE)  # json.loads of every line
    assert {line[fs.REQUEST_ID] for line in lines} == {f"train-{odd}-{n}" for n in range(5)}
    assert lines[0]["context"][worlds.QUERY_ID] == f"train-{odd}"
    run(tmp_path / "oracle", world="letor", letor_train=str(train), oracle_lists=True)
    oracle = read_lines(tmp_path / "oracle" / sm.ORACLE_DIR / sm.JUDGED_FILE)
    assert {line[fs.REQUEST_ID] for line in oracle} == {f"judged-train-{odd}"}


# --- validation, determinism, CLI -----------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(devices="ios:0"), "share must be > 0"),
    (dict(devices="ios:x"), "not a number"),
    (dict(devices="ios:0.5:-1"), "eta must be in"),
    (dict(devices="ios:0.5:1:2"), "more than name:share:eta"),
    (dict(devices="ios:nan"), "finite"),
    (dict(top_examination=0.0), "top-examination"),
    (dict(top_examination=1.5), "top-examination"),
    (dict(trust_bias=-1.0), "trust-bias"),
    (dict(trust_bias=50.0), "trust-bias"),
    (dict(num_judged=-1), "num-judged"),
    (dict(world="ids", num_judged=41), "num-judged"),
    (dict(world="letor", letor_train=__file__, num_judged=3), "num-judged"),
    (dict(examination_curve="/nonexistent.json"), "not found"),
])
def test_bad_knobs_raise_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(RankerError, match=message) as err:
        run(tmp_path / "out", **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content, message", [
    ({"tv": [1.0] * 10}, "not in --devices"),
    ({"ios": [1.0] * 9}, "at least 10"),
    ({"ios": [1.0] * 9 + [0.0]}, "not a probability"),
    ({"ios": [1.0] * 9 + [True]}, "not a probability"),
    ([1.0] * 10, "JSON object"),
    ("{not json", "not valid JSON"),
    ({"ios": [1.0] * 10, "web": [0.5] * 10}, "both an η and"),
])
def test_bad_examination_curves(tmp_path, content, message):
    path = tmp_path / "curve.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RankerError, match=message) as err:
        run(tmp_path / "out", examination_curve=str(path))
    assert "\n" not in str(err.value)


def test_new_knobs_are_deterministic(tmp_path):
    for name in ("a", "b"):
        run(tmp_path / name, world="ids", click_model="cascade", trust_bias=2.0, top_examination=0.7,
            oracle_lists=True, num_judged=4)
    for f in (sm.IMPRESSIONS_FILE, sm.JUDGED_FILE, fs.SPEC_FILENAME, sm.TRUTH_FILE,
              f"{sm.ORACLE_DIR}/{sm.JUDGED_FILE}"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_cli_simulate_takes_the_knobs(tmp_path, capsys):
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["simulate"].format_help()
    for flag in ("--devices", "--examination-curve", "--top-examination", "--trust-bias",
                 "--num-judged", "--examine-all", "--oracle-lists", "--world"):
        assert flag in help_text
    assert "default: 1.0" in help_text and "ids" in help_text
    code = cli.main(["simulate", "--world", "ids", "--num-queries", "20", "--sessions-per-query", "2",
                     "--devices", PHONES, "--trust-bias", "1", "--num-judged", "3",
                     "--oracle-lists", "--output", str(tmp_path / "out")])
    assert code == 0
    truth = truth_of(tmp_path / "out")
    assert truth["device_eta"]["ios"] == 1.2 and truth["trust_bias"] == 1.0
    assert truth["queries"] == {"logged": 20, "judged": 3}
    assert (tmp_path / "out" / sm.ORACLE_DIR / sm.JUDGED_FILE).exists()
    assert cli.main(["simulate", "--top-examination", "2", "--output", str(tmp_path / "x")]) == 2
    assert "top-examination" in capsys.readouterr().err
