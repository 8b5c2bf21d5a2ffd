"""Re-ingesting verifiers/ART/verl rollouts with another --success-threshold (issue 23, item 7).

An episode's identity does not depend on the threshold, so the second ingest meets the same episodes
with another success label and is refused in one line naming the threshold used before; nothing is
added (each episode stays once, with one label) and the ingest_log records the threshold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.ingest import ingest_file
from calib.store import Store

runner = CliRunner()
DATA = Path(__file__).resolve().parent / "data"
DUMPS = {
    "verifiers-results": DATA / "verifiers" / "results",
    "verifiers-traces": DATA / "verifiers" / "traces" / "traces.jsonl",
    "art-parquet": DATA / "art" / "proj",
    "art-legacy": DATA / "art" / "legacy",
    "verl": DATA / "verl" / "rollouts",
}


def _state(st: Store) -> tuple[int, int, list]:
    labels = st.query("SELECT episode_id, success FROM episodes ORDER BY episode_id")
    return st.count(), st.count("turns"), list(zip(labels.episode_id, labels.success))


@pytest.mark.parametrize("name", list(DUMPS))
def test_reingest_with_another_threshold_is_refused_and_adds_nothing(tmp_path: Path, name: str):
    dump, store = DUMPS[name], tmp_path / "store"
    res = runner.invoke(app, ["ingest", str(dump), "--store", str(store)])
    assert res.exit_code == 0, res.output
    st = Store(store, create=False)
    before = _state(st)
    assert before[0] > 0
    res = runner.invoke(app, ["ingest", str(dump), "--store", str(store), "--success-threshold", "0.5"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    error = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "--success-threshold 1 " in error[0] and "0.5" in error[0], res.output
    assert _state(st) == before  # each episode once, with its first label
    log = st.query("SELECT episodes, success_threshold FROM ingest_log")
    assert log.episodes.tolist() == [before[0]] and log.success_threshold.tolist() == [1.0]
    # the same threshold again is a plain re-ingest: every episode a duplicate
    again = ingest_file(st, dump)
    assert again.episodes == 0 and again.skipped_duplicates == before[0] and again.quarantined == 0
    assert _state(st) == before


@pytest.mark.parametrize("name", ["verifiers-results", "art-parquet", "verl"])
def test_episode_ids_do_not_depend_on_the_threshold(tmp_path: Path, name: str):
    """Two stores, two thresholds: the same episode ids, different labels (the rewards are 0.2..1)."""
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    ingest_file(a, DUMPS[name], success_threshold=1.0)
    ingest_file(b, DUMPS[name], success_threshold=0.5)
    ids_a, ids_b = _state(a)[2], _state(b)[2]
    assert [i for i, _ in ids_a] == [i for i, _ in ids_b]
    assert sum(s for _, s in ids_a) < sum(s for _, s in ids_b)


def test_other_threshold_after_a_partial_first_ingest_adds_nothing_either(tmp_path: Path):
    """The refusal covers the whole file: rollouts new to the store are not ingested with the new
    threshold either (one file, one threshold)."""
    src = tmp_path / "vf"
    src.mkdir()
    lines = (DUMPS["verifiers-results"] / "results.jsonl").read_text().splitlines()
    (src / "metadata.json").write_text((DUMPS["verifiers-results"] / "metadata.json").read_text())
    (src / "results.jsonl").write_text("\n".join(lines[:4]) + "\n")
    st = Store(tmp_path / "store")
    assert ingest_file(st, src, fmt="verifiers").episodes == 4
    (src / "results.jsonl").write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["ingest", str(src), "--store", str(st.path), "--success-threshold", "0.5"])
    assert res.exit_code == 1 and "--success-threshold 1 " in res.output
    assert st.count() == 4
    assert ingest_file(st, src, fmt="verifiers").episodes == len(lines) - 4
