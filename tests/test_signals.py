"""Built-in signals (hand fixtures; SQL == per-episode Python), deep matching, caching, custom signals."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import numpy as np
import pytest

from calib.errors import CalibError, UsageError
from calib.records import normalize_episode
from calib.sample_episodes import synthetic_records
from calib.signals import BUILTIN_SIGNALS, episode_signals
from calib.signals.builtin import is_confirmation
from calib.signals.compute import compute_signals
from calib.signals.matching import call_key
from calib.signals.registry import available_signals, resolve_signal
from calib.store import Store
from calib.tools import airline_catalogue

CAT = airline_catalogue()
ALL = list(BUILTIN_SIGNALS)


# ----------------------------------------------------------------------------- fixtures


def _call(cid, name, args, result="{}", content=""):
    raw = args if isinstance(args, str) else json.dumps(args)
    return [
        {"role": "assistant", "content": content,
         "tool_calls": [{"id": cid, "type": "function", "function": {"name": name, "arguments": raw}}]},
        {"role": "tool", "tool_call_id": cid, "name": name, "content": result},
    ]


def hand_episode() -> dict:
    """One episode that makes every built-in fire somewhere; EXPECTED below holds the values by hand."""
    m = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi, I am u1"}]
    m += _call("c0", "get_user_details", {"user_id": "u1"})  # 0 read
    m += _call("c1", "get_user_details", {"user_id": "  u1 "})  # 1 read, redundant (whitespace)
    m += [{"role": "assistant", "content": "Cancel R1, shall I proceed?"},  # 2 message
          {"role": "user", "content": "Yes, go ahead."}]
    m += _call("c3", "cancel_reservation", {"reservation_id": "R2"})  # 3 soft + non-gold write, confirmed
    m += _call("c4", "cancel_reservation", {"reservation_id": "R1"})  # 4 gold, confirmed
    m += _call("c5", "send_certificate", {"amount": 50.0, "user_id": "u1"})  # 5 gold (50.0 == 50, key order)
    m += _call("c6", "cancel_reservation", {"reservation_id": "R1"})  # 6 already matched: redundant write
    m += _call("c7", "frobnicate", {"x": 1}, result="Error: unknown tool")  # 7 unknown tool
    m += _call("c8", "update_reservation_baggages", {"reservation_id": "R1"})  # 8 schema-invalid (missing args)
    m += _call("c9", "get_reservation_details", '{"reservation_id": ')  # 9 unparseable -> invalid turn
    m += _call("c10", "get_reservation_details", {"reservation_id": "R9"},
               result="Error: reservation not found")  # 10 valid call, error result
    m += [{"role": "assistant", "content": "Done, goodbye!"}]  # 11 message
    return {
        "episode_id": "hand", "run_id": "hand", "task_id": "t", "outcome": 1.0, "messages": m,
        "expected_actions": [{"name": "cancel_reservation", "arguments": {"reservation_id": "R1"}},
                             {"name": "send_certificate", "arguments": {"user_id": "u1", "amount": 50}}],
        "info": {"progress": [0, 0, 0, 0, 0.5, 1.0, 1.0, 1.0]},  # shorter than the episode on purpose
    }


N = None
EXPECTED = {
    #                      0  1  2  3  4  5  6  7  8  9  10 11
    "gold_match":         [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
    "soft_match":         [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    "soft_match_score":   [0, 0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0, 0],  # R2 vs R1: no argument matches
    "read_only":          [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
    "state_change":       [0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0],
    "tool_error":         [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0],
    "valid_call":         [1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0],
    "redundant_call":     [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    "message_only":       [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    "confirm_before_write": [0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0],
    "progress":           [0, 0, 0, 0, 0.5, 0.5, 0, 0, N, N, N, N],
}


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def _stored(store: Store, signal: str, episode_id: str) -> list:
    vals = store.query(
        "SELECT value FROM signals WHERE signal = ? AND episode_id = ? ORDER BY turn_idx", [signal, episode_id]
    )["value"].tolist()
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in vals]


# ----------------------------------------------------------------------------- hand fixture


def test_hand_episode_python(store):
    ep = normalize_episode(hand_episode())
    got = episode_signals(ep, CAT)
    for name, expected in EXPECTED.items():
        assert got[name] == [None if e is None else float(e) for e in expected], name
    # turn_tokens: ceil(characters / 4) of message text and tool call (name + canonical JSON arguments)
    assert got["turn_tokens"][11] == 4.0  # "Done, goodbye!" is 14 characters
    assert got["turn_tokens"][0] == 8.0  # "get_user_details" + '{"user_id":"u1"}' is 32 characters


def test_hand_episode_sql_equals_expected(store):
    store.add_episodes([hand_episode()], source="hand")
    compute_signals(store, ALL, catalogue=CAT)
    ep = normalize_episode(hand_episode())
    py = episode_signals(ep, CAT)
    for name in ALL:
        assert _stored(store, name, "hand") == py[name], name


def soft_episode() -> dict:
    """Soft matches with known argument shares (the seed paper's graded soft match)."""
    m = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    m += _call("c0", "send_certificate", {"user_id": "u1", "amount": 100})  # 1 of 2 arguments: 0.75
    m += _call("c1", "update_reservation_baggages", {"reservation_id": "R1", "total_baggages": 3,
                                                     "nonfree_baggages": 0, "payment_id": "p1"})  # 3 of 4: 0.875
    m += _call("c2", "send_certificate", {"user_id": "u2", "amount": "50.0"})  # amount only (number schema): 0.75
    m += _call("c3", "send_certificate", {"user_id": "u1", "amount": 50})  # gold: soft score 0
    m += _call("c4", "send_certificate", {"user_id": "u1", "amount": 50})  # repeat of a matched gold: not soft
    m += [{"role": "assistant", "content": "Done."}]
    return {
        "episode_id": "soft", "run_id": "soft", "task_id": "t", "outcome": 0.0, "messages": m,
        "expected_actions": [
            {"name": "send_certificate", "arguments": {"user_id": "u1", "amount": 50}},
            {"name": "update_reservation_baggages", "arguments": {"reservation_id": "R1", "total_baggages": 2,
                                                                  "nonfree_baggages": 0, "payment_id": "p1"}},
        ],
    }


def test_soft_match_score_grades_argument_share(store):
    got = episode_signals(normalize_episode(soft_episode()), CAT)
    assert got["soft_match_score"] == [0.75, 0.875, 0.75, 0.0, 0.0, 0.0]
    assert got["soft_match"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert got["message_only"] == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    store.add_episodes([soft_episode()], source="soft")
    compute_signals(store, ["soft_match_score", "message_only"], catalogue=CAT)
    assert _stored(store, "soft_match_score", "soft") == got["soft_match_score"]
    assert _stored(store, "message_only", "soft") == got["message_only"]


def test_gold_matches_each_expected_action_at_most_once():
    rec = hand_episode()
    ep = normalize_episode(rec)
    assert episode_signals(ep, CAT)["gold_match"][6] == 0.0  # R1 was already matched at turn 4
    rec["expected_actions"].append({"name": "cancel_reservation", "arguments": {"reservation_id": "R1"}})
    rec["episode_id"] = "hand2"
    assert episode_signals(normalize_episode(rec), CAT)["gold_match"][6] == 1.0  # two copies expected


def test_no_expected_actions_gives_null_gold(store):
    rec = hand_episode()
    rec["expected_actions"] = []
    rec.pop("info")
    got = episode_signals(normalize_episode(rec), CAT)
    assert set(got["gold_match"]) == {None} and set(got["soft_match"]) == {None}
    assert set(got["soft_match_score"]) == {None}
    assert set(got["progress"]) == {None}
    # without gold, every write is a state change
    assert got["state_change"] == [0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0]


# ----------------------------------------------------------------------------- deep matching


@pytest.mark.parametrize(
    "a, b, same",
    [
        ({"reservation_id": "R1"}, '{"reservation_id": "R1"}', True),  # parsed JSON
        ({"user_id": "u1", "amount": 50}, {"amount": 50.0, "user_id": "u1"}, True),  # key order, 50.0
        ({"user_id": "u1", "amount": 50}, {"amount": "50", "user_id": "u1"}, True),  # number by schema
        ({"user_id": "u1", "amount": 50}, {"amount": 50.5, "user_id": "u1"}, False),
        ({"user_id": " u1  "}, {"user_id": "u1"}, True),  # whitespace
        ({"user_id": "U1"}, {"user_id": "u1"}, False),  # ids are case-sensitive
    ],
)
def test_call_key_send_certificate(a, b, same):
    tool = "send_certificate" if "amount" in str(a) else "get_user_details"
    assert (call_key(tool, a, CAT) == call_key(tool, b, CAT)) is same


def test_call_key_enum_case_and_nested():
    a = {"reservation_id": "R1", "cabin": "Economy", "payment_id": "p",
         "flights": [{"flight_number": "HAT1", "date": "2024-05-01"}]}
    b = {"flights": [{"date": "2024-05-01 ", "flight_number": "HAT1"}], "payment_id": "p",
         "cabin": "economy", "reservation_id": "R1"}
    assert call_key("update_reservation_flights", a, CAT) == call_key("update_reservation_flights", b, CAT)
    c = dict(b, flights=[{"date": "2024-05-02", "flight_number": "HAT1"}])
    assert call_key("update_reservation_flights", a, CAT) != call_key("update_reservation_flights", c, CAT)


def test_confirmation_words():
    assert is_confirmation("Yes, please go ahead")
    assert is_confirmation("I confirm.")
    assert not is_confirmation("No, don't proceed")
    assert not is_confirmation("wait, what does it cost?")
    assert not is_confirmation("please do not proceed yet")
    assert not is_confirmation("Yesterday I flew")  # whole words only
    assert not is_confirmation(None)


# ----------------------------------------------------------------------------- SQL == Python


def _assert_store_matches_python(store: Store, episodes: list[dict]) -> int:
    wide = store.query("SELECT episode_id, turn_idx, signal, value FROM signals ORDER BY episode_id, turn_idx")
    by = {(e, s): g["value"].tolist() for (e, s), g in wide.groupby(["episode_id", "signal"])}
    checked = 0
    for ep in episodes:
        py = episode_signals(ep, CAT)
        for name in ALL:
            got = [None if (isinstance(v, float) and math.isnan(v)) else v for v in by[(ep["episode_id"], name)]]
            assert got == py[name], (ep["episode_id"], name)
            checked += len(got)
    return checked


def test_sql_equals_python_on_synthetic_records(store):
    recs = list(synthetic_records(25, 4, seed=3))
    # add a turn with two parallel calls (one gold, one read) to exercise multi-call turns
    extra = hand_episode()
    extra["episode_id"] = "multi"
    extra["messages"] = extra["messages"][:2] + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "name": "get_user_details", "arguments": {"user_id": "u1"}},
            {"id": "b", "name": "cancel_reservation", "arguments": {"reservation_id": "R1"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "{}"},
        {"role": "tool", "tool_call_id": "b", "content": "{}"},
    ]
    recs.append(extra)
    store.add_episodes(recs, source="syn")
    compute_signals(store, ALL, catalogue=CAT)
    eps = [normalize_episode(r) for r in recs]
    assert _assert_store_matches_python(store, eps) > 500
    multi = episode_signals(eps[-1], CAT)
    assert multi["gold_match"] == [1.0] and multi["read_only"] == [1.0] and multi["state_change"] == [0.0]


def test_sql_equals_python_on_taubench_sample(store, taubench_dir):
    root = taubench_dir
    from calib.ingest import ingest_file, taubench_to_native

    path = root / "trajectories" / "sample.json"
    ingest_file(store, path, fmt="taubench", run_id="sample")
    compute_signals(store, ALL, catalogue=CAT)
    eps = [normalize_episode(taubench_to_native(r, run_id="sample")) for r in json.loads(path.read_text())]
    assert _assert_store_matches_python(store, eps) > 100
    gold = store.query("SELECT sum(value) FILTER (WHERE NOT isnan(value)) AS s FROM signals WHERE signal='gold_match'")
    assert gold["s"][0] > 0  # GPT-4o makes some of the expected calls


# ----------------------------------------------------------------------------- caching


def test_cache_recomputes_only_new_episodes(store):
    store.add_episodes(synthetic_records(6, 3, seed=0), source="a")
    first = compute_signals(store, ["gold_match", "read_only"], catalogue=CAT)
    n_turns = store.count("turns")
    assert first.written == {"gold_match": n_turns, "read_only": n_turns}
    again = compute_signals(store, ["gold_match", "read_only"], catalogue=CAT)
    assert again.written == {} and sorted(again.cached) == ["gold_match", "read_only"]
    store.add_episodes(synthetic_records(2, 3, seed=0, run_id="b"), source="b")
    new_turns = store.count("turns") - n_turns
    third = compute_signals(store, ["gold_match"], catalogue=CAT)
    assert third.written == {"gold_match": new_turns}
    assert store.query("SELECT count(*) AS n FROM signals WHERE signal='gold_match'")["n"][0] == n_turns + new_turns


def test_cache_respects_runs(store):
    store.add_episodes(synthetic_records(3, 2, seed=0, run_id="a"), source="a")
    store.add_episodes(synthetic_records(3, 2, seed=1, run_id="b"), source="b")
    rep = compute_signals(store, ["read_only"], catalogue=CAT, runs=["a"])
    n_a = store.query("SELECT count(*) AS n FROM turns JOIN episodes USING (episode_id) WHERE run_id='a'")["n"][0]
    assert rep.written == {"read_only": n_a}


# ----------------------------------------------------------------------------- custom signals


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    """A module with custom signals and a fake installed distribution that registers one by entry point."""
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "my_signals.py").write_text(textwrap.dedent('''
        from calib.signals import signal

        VERSION = {"v": "1"}

        def says_sorry(episode, turn):
            """1 when the assistant apologises."""
            return float("sorry" in (turn["text"] or "").lower())

        @signal(version="7")
        def turn_parity(episode, turn):
            return float(turn["turn_idx"] % 2)

        def success_leak(episode, turn):
            return None if turn["turn_idx"] == 0 else float(episode["success"])

        def broken(episode, turn):
            raise RuntimeError("boom")

        def not_a_number(episode, turn):
            return "high"
    '''))
    dist = d / "my_signals_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-signals-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[calib.signals]\napology = my_signals:says_sorry\n")
    monkeypatch.syspath_prepend(str(d))
    yield d
    sys.modules.pop("my_signals", None)


def test_custom_signal_module_function(store, plugin_dir):
    store.add_episodes([hand_episode()], source="hand")
    rep = compute_signals(store, ["my_signals:turn_parity", "my_signals:success_leak"], catalogue=CAT)
    assert rep.versions["my_signals:turn_parity"] == "7"
    assert rep.versions["my_signals:success_leak"].startswith("src-")
    assert _stored(store, "my_signals:turn_parity", "hand") == [float(t % 2) for t in range(12)]
    assert _stored(store, "my_signals:success_leak", "hand") == [None] + [1.0] * 11
    assert compute_signals(store, ["my_signals:turn_parity"], catalogue=CAT).written == {}


def test_entry_point_signal(store, plugin_dir):
    assert "apology" in available_signals()
    sig = resolve_signal("apology")
    assert sig.description.startswith("1 when the assistant apologises")
    rec = hand_episode()
    rec["messages"][-1]["content"] = "Sorry, goodbye!"
    store.add_episodes([rec], source="hand")
    compute_signals(store, ["apology"], catalogue=CAT)
    assert _stored(store, "apology", "hand") == [0.0] * 11 + [1.0]


def test_custom_signal_errors(store, plugin_dir):
    store.add_episodes([hand_episode()], source="hand")
    with pytest.raises(CalibError, match=r"my_signals:broken.*episode 'hand' turn 0.*boom"):
        compute_signals(store, ["my_signals:broken"], catalogue=CAT)
    with pytest.raises(CalibError, match=r"returned 'high'.*finite number"):
        compute_signals(store, ["my_signals:not_a_number"], catalogue=CAT)
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        resolve_signal("my_signals:nope")
    with pytest.raises(UsageError, match="cannot import module"):
        resolve_signal("no_such_module_xyz:f")
    with pytest.raises(UsageError, match="unknown signal 'gold'.*gold_match"):
        resolve_signal("gold")


def test_version_change_recomputes(store, plugin_dir, monkeypatch):
    store.add_episodes([hand_episode()], source="hand")
    compute_signals(store, ["my_signals:turn_parity"], catalogue=CAT)
    import my_signals

    monkeypatch.setattr(my_signals.turn_parity, "signal_version", "8")
    rep = compute_signals(store, ["my_signals:turn_parity"], catalogue=CAT)
    assert rep.written == {"my_signals:turn_parity": 12}
    assert store.signal_versions()["my_signals:turn_parity"] == "8"
    assert store.query("SELECT count(*) AS n FROM signals")["n"][0] == 12  # old version not visible


def test_store_values_are_numbers_or_null(store):
    store.add_episodes(synthetic_records(4, 2, seed=9), source="s")
    compute_signals(store, ALL, catalogue=CAT)
    df = store.query("SELECT signal, value FROM signals")
    v = df["value"].to_numpy(dtype=float)
    assert np.isfinite(v[~np.isnan(v)]).all()
    assert set(df["signal"]) == set(ALL)


def test_progress_edge_cases_sql_equals_python(store):
    recs = []
    for i, prog in enumerate([[0.5, True, "x", 1, 1], {"a": 1}, 0.5, [0, 0.25], [1e-3, 2e-3, 0.5, 0.5, 1.0]]):
        r = hand_episode()
        r["episode_id"] = f"p{i}"
        r["messages"] = r["messages"][:12]  # 5 turns
        r["info"] = {"progress": prog}
        recs.append(r)
    store.add_episodes(recs, source="p")
    compute_signals(store, ["progress"], catalogue=CAT)
    expected = {"p0": [0.5, None, None, None, 0.0], "p1": [None] * 5, "p2": [None] * 5,
                "p3": [0.0, 0.25, None, None, None], "p4": [1e-3, 1e-3, 0.498, 0.0, 0.5]}
    for r in recs:
        py = episode_signals(normalize_episode(r), CAT, ["progress"])["progress"]
        got = _stored(store, "progress", r["episode_id"])
        assert got == pytest.approx(py) if None not in py else got == py
        exp = expected[r["episode_id"]]
        assert [None if e is None else pytest.approx(e) for e in exp] == py
