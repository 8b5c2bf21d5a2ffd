"""Every command on a matrix of bad inputs: a non-zero exit, one red line, no traceback (issue 14, item 6).

Bad inputs: a missing file, an empty file, a directory where a file is expected, an output that
cannot be written (a path under a regular file: root ignores file modes, this fails for everybody),
an existing output, quotes and spaces in paths (these must *work*), a file in the wrong format, and
a directory that is not a store. Runs in-process with typer's CliRunner; commands that train only
get their argument and file checks exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calib.cli import app
from calib.sample_episodes import synthetic_records
from calib.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """The world of paths the matrix names with {key}."""
    root = tmp_path_factory.mktemp("cli-errors")
    good = root / "good.jsonl"
    good.write_text("".join(json.dumps(e) + "\n" for e in synthetic_records(2, 8, seed=5)))
    store = root / "store"
    Store(store).add_episodes([json.loads(x) for x in good.read_text().splitlines()], source=str(good))
    (root / "empty.jsonl").write_text("")
    (root / "empty.yaml").write_text("")
    (root / "adir").mkdir()
    (root / "notastore").mkdir()
    (root / "notastore" / "thesis.tex").write_text("precious")
    (root / "garbage.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary")
    (root / "text.txt").write_text("hello, this is not a rollout\n")
    (root / "list.yaml").write_text("- just\n- a list\n")
    (root / "bad.yaml").write_text("version: [1\n")
    (root / "existing.jsonl").write_text("keep me\n")
    spec = {"version": 1, "name": "t", "turn_rewards": [{"signal": "tool_error", "weight": -0.1}]}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    quoted = root / "it's a dir"
    quoted.mkdir()
    return {"root": root, "good": good, "store": store, "empty": root / "empty.jsonl",
            "empty_yaml": root / "empty.yaml", "dir": root / "adir", "missing": root / "nope.jsonl",
            "notastore": root / "notastore", "garbage": root / "garbage.bin", "text": root / "text.txt",
            "list_yaml": root / "list.yaml", "bad_yaml": root / "bad.yaml", "existing": root / "existing.jsonl",
            "unwritable": good / "sub" / "out", "spec": root / "spec.yaml", "quoted": quoted}


# (case id, argv template, expected exit code). {key} is replaced by w[key].
BAD = [
    # ingest
    ("ingest-missing", "ingest {missing} --store {store}", 2),
    ("ingest-empty", "ingest {empty} --store {store}", 1),
    ("ingest-dir", "ingest {dir} --store {store}", 2),
    ("ingest-wrong-format", "ingest {garbage} --store {store}", 1),
    ("ingest-wrong-format-flag", "ingest {good} --store {store} --format xml", 2),
    ("ingest-not-a-store", "ingest {good} --store {notastore}", 1),
    ("ingest-store-is-file", "ingest {good} --store {good}", 1),
    ("ingest-store-unwritable", "ingest {good} --store {unwritable}", 1),
    # store info / query / export
    ("info-missing-store", "store info --store {missing}", 1),
    ("info-not-a-store", "store info --store {notastore}", 1),
    ("info-store-is-file", "store info --store {good}", 1),
    ("query-bad-sql", "store query SELEC --store {store}", 1),
    ("query-missing-table", "store query 'SELECT * FROM nope' --store {store}", 1),
    ("query-not-a-store", "store query 'SELECT 1' --store {notastore}", 1),
    ("export-out-is-dir", "store export --out {dir} --store {store}", 1),
    ("export-out-exists", "store export --out {existing} --store {store}", 1),
    ("export-out-unwritable", "store export --out {unwritable} --store {store}", 1),
    ("export-parquet-out-unwritable", "store export --format parquet --out {unwritable} --store {store}", 1),
    ("export-parquet-out-is-file", "store export --format parquet --out {existing} --store {store}", 1),
    ("export-wrong-format", "store export --format xml --out {root}/x --store {store}", 2),
    ("export-not-a-store", "store export --out {root}/y.jsonl --store {notastore}", 1),
    # analyze
    ("analyze-missing-store", "analyze --store {missing} --out {root}/a1", 1),
    ("analyze-not-a-store", "analyze --store {notastore} --out {root}/a2", 1),
    ("analyze-out-unwritable", "analyze --store {store} --out {unwritable} --n-boot 5", 1),
    ("analyze-out-is-file", "analyze --store {store} --out {existing} --n-boot 5", 1),
    ("analyze-base-spec-missing", "analyze --store {store} --out {root}/a3 --base-spec {missing}", 2),
    ("analyze-base-spec-empty", "analyze --store {store} --out {root}/a4 --base-spec {empty_yaml}", 2),
    ("analyze-base-spec-dir", "analyze --store {store} --out {root}/a5 --base-spec {dir}", 2),
    ("analyze-base-spec-wrong-format", "analyze --store {store} --out {root}/a6 --base-spec {garbage}", 2),
    ("analyze-base-spec-bad-yaml", "analyze --store {store} --out {root}/a7 --base-spec {bad_yaml}", 2),
    # report
    ("report-missing-store", "report --store {missing} --out {root}/r1.html", 1),
    ("report-not-a-store", "report --store {notastore} --out {root}/r2.html", 1),
    ("report-out-unwritable", "report --store {store} --out {unwritable} --max-episodes 2", 1),
    ("report-out-is-dir", "report --store {store} --out {dir} --max-episodes 2", 1),
    ("report-analysis-missing", "report --store {store} --out {root}/r3.html --analysis {missing}", 1),
    ("report-analysis-empty", "report --store {store} --out {root}/r4.html --analysis {empty}", 1),
    ("report-analysis-dir", "report --store {store} --out {root}/r5.html --analysis {dir}", 1),
    ("report-analysis-wrong-format", "report --store {store} --out {root}/r6.html --analysis {garbage}", 1),
    ("report-spec-missing", "report --store {store} --out {root}/r7.html --spec {missing}", 2),
    ("report-spec-wrong-format", "report --store {store} --out {root}/r8.html --spec {list_yaml}", 2),
    # eval
    ("eval-missing-store", "eval --store {missing}", 1),
    ("eval-not-a-store", "eval --store {notastore}", 1),
    ("eval-unknown-run", "eval --store {store} --run nope", 1),
    # replay
    ("replay-missing", "replay {missing}", 2),
    ("replay-empty", "replay {empty}", 2),
    ("replay-dir", "replay {dir}", 2),
    ("replay-wrong-format", "replay {garbage}", 2),
    ("replay-text", "replay {text}", 2),
    ("replay-store-not-a-store", "replay {good} --store {notastore}", 1),
    # rollout (fails before playing)
    ("rollout-store-unwritable", "rollout --tasks airline-mini/0 -G 1 --store {unwritable}", 1),
    ("rollout-not-a-store", "rollout --tasks airline-mini/0 -G 1 --store {notastore}", 1),
    ("rollout-domain-missing", "rollout --domain taubench:{missing} --store {root}/s2", 2),
    # train: argument and file checks only
    ("train-spec-missing", "train --spec {missing} --model tiny --output-dir {root}/t1", 2),
    ("train-spec-empty", "train --spec {empty_yaml} --model tiny --output-dir {root}/t2", 2),
    ("train-spec-dir", "train --spec {dir} --model tiny --output-dir {root}/t3", 2),
    ("train-spec-wrong-format", "train --spec {garbage} --model tiny --output-dir {root}/t4", 2),
    ("train-model-missing", "train --spec {spec} --model {missing} --output-dir {root}/t5", 2),
    ("train-output-unwritable", "train --spec {spec} --model tiny --output-dir {unwritable}", 1),
    ("train-store-not-a-store", "train --spec {spec} --model tiny --output-dir {root}/t6 --store {notastore}", 1),
    # loop
    ("loop-config-missing", "loop --config {missing}", 2),
    ("loop-config-empty", "loop --config {empty_yaml}", 2),
    ("loop-config-dir", "loop --config {dir}", 2),
    ("loop-config-wrong-format", "loop --config {garbage}", 2),
    ("loop-config-list", "loop --config {list_yaml}", 2),
    # experiment
    ("experiment-out-unwritable",
     "experiment misalignment --quick --seeds 1 --steps 1 --out {unwritable} --no-results-md", 1),
    ("experiment-out-is-file",
     "experiment misalignment --quick --seeds 1 --steps 1 --out {existing} --no-results-md", 1),
]


def _argv(template: str, w: dict[str, Path]) -> list[str]:
    import shlex

    return [a.format(**{k: str(v) for k, v in w.items()}) for a in shlex.split(template)]


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("case,template,code", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_red_line(w, case: str, template: str, code: int):
    before = {p.name for p in w["root"].iterdir()}
    res = runner.invoke(app, _argv(template, w))
    lines = _error_lines(res.output)
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit), (
        res.output, res.exception)
    assert res.exit_code == code, (res.exit_code, res.output)
    errors = [line for line in lines if "Error" in line]
    assert len(errors) == 1, res.output
    if case not in {"ingest-wrong-format", "ingest-empty"}:  # these also print the ingest table
        assert len(lines) == 1, res.output
    stray = {p for p in {p.name for p in w["root"].iterdir()} - before if p.endswith(".tmp") or p.startswith(".")}
    assert not stray, stray
    assert (w["notastore"] / "thesis.tex").read_text() == "precious"
    assert w["existing"].read_text() == "keep me\n"


def test_quotes_and_spaces_in_paths_work(w):
    q = w["quoted"]
    src = q / "it's \"good\".jsonl"
    src.write_text(w["good"].read_text())
    store = q / "my store's"
    res = runner.invoke(app, ["ingest", str(src), "--store", str(store)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["store", "export", "--format", "parquet", "--out", str(q / "it's out"),
                              "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (q / "it's out").iterdir()} == {"episodes.parquet", "turns.parquet", "signals.parquet"}
    res = runner.invoke(app, ["store", "export", "--out", str(q / "it's all.jsonl"), "--store", str(store)])
    assert res.exit_code == 0 and len((q / "it's all.jsonl").read_text().splitlines()) == 16
    res = runner.invoke(app, ["analyze", "--store", str(store), "--out", str(q / "it's analysis"), "--n-boot", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", "--store", str(store), "--out", str(q / "it's report.html"),
                              "--analysis", str(q / "it's analysis" / "analysis.json"), "--max-episodes", "2"])
    assert res.exit_code == 0, res.output
