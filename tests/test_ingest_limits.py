"""Hostile input at ingest (issue 23): records nested too deep (item 3) or too long (item 4), a
non-finite --success-threshold (item 5), refusals before the store is created and files cut while
they are read (item 10).

Every path is exercised: format sniffing, the native fast path (DuckDB) and the per-record path, the
JSON array reader (tau-bench), the chat, verifiers, ART and tau2 readers. The memory bound is measured
in a child process (peak RSS of one ingest against the same ingest of a tiny file), never by time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import calib.ingest as ci
from calib.cli import app
from calib.errors import UsageError
from calib.ingest import ingest_file
from calib.ingest.readers import iter_json_array
from calib.ingest.sniff import sniff_format
from calib.jsonlimits import MAX_DEPTH
from calib.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
DEEP_ARRAY = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
TOO_DEEP = f"nested deeper than {MAX_DEPTH}"


def _ep(task: str, **extra) -> dict:
    return {"run_id": "r", "task_id": task, "outcome": 1.0, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], **extra}


def _nested_record(depth: int) -> str:
    """A native record whose arrays and objects nest exactly ``depth`` levels (record, info, lists)."""
    inner = "[" * (depth - 2) + "1" + "]" * (depth - 2)
    return json.dumps(_ep(f"depth{depth}"))[:-1] + ', "info": {"x": ' + inner + "}}"


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return path


def _quarantine(r) -> list[dict]:
    return [json.loads(x) for x in Path(r.quarantine_file).read_text().splitlines()] if r.quarantine_file else []


def _ingest(path: Path, store: Path, *, fast: bool = True, monkeypatch=None, **kw):
    if monkeypatch is not None:
        monkeypatch.setattr(ci, "_FAST_OFF", not fast)
    r = ingest_file(Store(store), path, **kw)
    return r, _quarantine(r)


# ----------------------------------------------------------------------------- item 3: nesting


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "per-record"])
@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("at", [0, 1], ids=["line1", "line2"])
def test_a_deep_jsonl_line_is_quarantined_and_the_rest_ingested(tmp_path: Path, monkeypatch, fast, deep, at):
    """Line 1 also goes through format sniffing (auto), which used to raise RecursionError."""
    lines = [json.dumps(_ep("t1")), json.dumps(_ep("t2"))]
    lines.insert(at, deep)
    src = _write_lines(tmp_path / "d.jsonl", lines)
    r, q = _ingest(src, tmp_path / "st", fast=fast, monkeypatch=monkeypatch)
    assert (r.format, r.episodes, r.quarantined) == ("native", 2, 1)
    assert q[0]["file"] == str(src) and q[0]["line"] == at + 1 and TOO_DEEP in q[0]["reason"]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "per-record"])
def test_the_depth_limit_is_exact(tmp_path: Path, monkeypatch, fast):
    """A record nested exactly MAX_DEPTH levels is ingested (everything after the reader copes with it);
    one level more is quarantined."""
    src = _write_lines(tmp_path / "b.jsonl", [_nested_record(MAX_DEPTH), _nested_record(MAX_DEPTH + 1)])
    r, q = _ingest(src, tmp_path / "st", fast=fast, monkeypatch=monkeypatch)
    assert (r.episodes, r.quarantined) == (1, 1)
    assert q[0]["line"] == 2 and TOO_DEEP in q[0]["reason"]
    got = Store(tmp_path / "st").query("SELECT task_id FROM episodes")["task_id"].tolist()
    assert got == [f"depth{MAX_DEPTH}"]


def _tb(task: int) -> dict:
    return {"task_id": task, "reward": 1.0, "info": {},
            "traj": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}


@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT, "[" * 600 + "]" * 600], ids=["array", "object", "600"])
@pytest.mark.parametrize("chunk", [7, 1 << 20])  # the deep element crosses chunk boundaries, or not
def test_the_json_array_reader_skips_a_deep_element(tmp_path: Path, deep, chunk):
    """600 levels decode in Python but are over the limit; 10,000 used to raise RecursionError."""
    src = tmp_path / "a.json"
    src.write_text("[\n" + json.dumps(_tb(1)) + ",\n" + deep + ",\n" + json.dumps(_tb(2)) + "\n]\n")
    got = [(line, rec and rec["task_id"], err and err[:len(TOO_DEEP)]) for line, rec, err, _ in
           iter_json_array(src, chunk_size=chunk)]
    assert got == [(2, 1, None), (3, None, TOO_DEEP), (4, 2, None)]


@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_a_deep_element_of_a_taubench_file_is_quarantined(tmp_path: Path, deep):
    src = tmp_path / "results.json"
    src.write_text("[" + json.dumps(_tb(1)) + "," + deep + "," + json.dumps(_tb(2)) + "]")
    r, q = _ingest(src, tmp_path / "st")
    assert (r.format, r.episodes, r.quarantined) == ("taubench", 2, 1)
    assert q[0]["file"] == str(src) and q[0]["line"] == 1 and TOO_DEEP in q[0]["reason"]


@pytest.mark.parametrize("name,deep", [("whole.json", DEEP_ARRAY), ("whole.json", DEEP_OBJECT),
                                       ("whole.jsonl", DEEP_ARRAY)])
def test_a_file_that_is_one_deep_value_is_quarantined_in_one_line(tmp_path: Path, name, deep):
    """No traceback: the command says what it quarantined and exits 1 (nothing was ingested)."""
    src = tmp_path / name
    src.write_text(deep)
    res = subprocess.run([sys.executable, "-m", "calib", "ingest", str(src), "--store", str(tmp_path / "st")],
                         check=False, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stdout + res.stderr and "RecursionError" not in res.stdout + res.stderr
    assert TOO_DEEP in res.stdout and "nothing was ingested" in res.stdout + res.stderr


def test_sniffing_skips_a_deep_first_line(tmp_path: Path):
    """The format still comes from the first record that decodes: a verifiers file stays verifiers."""
    vf = (DATA / "verifiers" / "results" / "results.jsonl").read_text().splitlines()
    src = _write_lines(tmp_path / "results.jsonl", [DEEP_ARRAY, *vf])
    assert sniff_format(src) == "verifiers"
    assert sniff_format(_write_lines(tmp_path / "n.jsonl", [DEEP_OBJECT, json.dumps(_ep("t"))])) == "native"
    assert sniff_format(_write_lines(tmp_path / "only.jsonl", [DEEP_ARRAY])) == "taubench"  # one array: read as such


def _with_line(src: Path, dst: Path, at: int, line: str) -> Path:
    lines = src.read_text().splitlines()
    lines.insert(at, line)
    return _write_lines(dst, lines)


def test_deep_records_in_the_other_jsonl_formats(tmp_path: Path):
    """chat, verifiers, ART and verl JSONL read through the same reader: one quarantined line each."""
    chat = _write_lines(tmp_path / "chat.jsonl", [json.dumps({"prompt": "hi", "completion": "ok", "reward": 1}),
                                                  DEEP_OBJECT, json.dumps({"messages": [], "reward": 0})])
    vf = tmp_path / "vf"
    shutil.copytree(DATA / "verifiers" / "results", vf)
    _with_line(vf / "results.jsonl", vf / "results.jsonl", 1, DEEP_ARRAY)
    art = _with_line(DATA / "art" / "legacy" / "0001.jsonl", tmp_path / "0001.jsonl", 0, DEEP_OBJECT)
    verl = tmp_path / "verl"
    verl.mkdir()
    _with_line(DATA / "verl" / "rollouts" / "2.jsonl", verl / "2.jsonl", 1, DEEP_OBJECT)
    for path, fmt in [(chat, "chat"), (vf, "verifiers"), (art, "art"), (verl, "verl")]:
        r, q = _ingest(path, tmp_path / f"st-{fmt}", fmt=fmt)
        deep = [e for e in q if TOO_DEEP in e["reason"]]
        assert len(deep) == 1 and deep[0]["line"] == (2 if fmt != "art" else 1), (fmt, q)
        assert r.episodes >= 1, fmt


def test_deep_json_text_inside_a_record_is_quarantined(tmp_path: Path):
    """verifiers keeps each tool call as JSON text: a deep one is refused before Python decodes it."""
    vf = tmp_path / "vf"
    shutil.copytree(DATA / "verifiers" / "results", vf)
    rows = [json.loads(x) for x in (vf / "results.jsonl").read_text().splitlines()]
    rows[0]["completion"][0]["tool_calls"] = [DEEP_ARRAY]
    _write_lines(vf / "results.jsonl", [json.dumps(x) for x in rows])
    r, q = _ingest(vf, tmp_path / "st")
    assert r.quarantined == 1 and q[0]["line"] == 1 and TOO_DEEP in q[0]["reason"]
    assert r.episodes == len(rows) - 1


def test_a_deep_tau2_results_file_is_quarantined(tmp_path: Path):
    doc = json.loads((DATA / "tau2_airline_oracle_4trials.json").read_text())
    text = json.dumps(doc)[:-1] + ', "extra": ' + DEEP_ARRAY + "}"
    src = tmp_path / "tau2.json"
    src.write_text(text)
    r, q = _ingest(src, tmp_path / "st", fmt="tau2")
    assert r.episodes == 0 and TOO_DEEP in q[0]["reason"] and q[0]["file"] == str(src)


# ----------------------------------------------------------------------------- item 4: size


def test_the_line_reader_reads_at_most_the_limit(tmp_path: Path):
    from calib.ingest.readers import iter_lines

    src = tmp_path / "l.jsonl"
    src.write_bytes(b"short\n" + b"x" * 1000 + b"\n" + b"y" * 100 + b"\n" + b"z" * 101 + b"\n\n" + b"last")
    with open(src, "rb") as f:
        got = [(n, len(raw), err) for n, raw, err in iter_lines(f, 100)]
    assert [(n, size) for n, size, _ in got] == [(1, 6), (2, 101), (3, 101), (4, 101), (6, 4)]  # long: its start
    assert [n for n, _, err in got if err] == [2, 4]
    assert "line is longer than 100 bytes (1,000 bytes)" in got[1][2] and "(101 bytes)" in got[3][2]


def _long_files(tmp_path: Path, size: int) -> dict[str, tuple[Path, str, int]]:
    """(path, format, line of the long record) per reader, each with a record of ``size`` bytes
    between good ones."""
    pad = "x" * size
    out = {}
    out["native"] = (_write_lines(tmp_path / "n.jsonl", [json.dumps(_ep("t1")), json.dumps(_ep("big", info={"p": pad})),
                                                           json.dumps(_ep("t2"))]), "native", 2)
    out["chat"] = (_write_lines(tmp_path / "c.jsonl", [json.dumps({"prompt": "a", "completion": "b", "reward": 1}),
                                                         json.dumps({"prompt": pad, "completion": "b", "reward": 1}),
                                                         json.dumps({"prompt": "c", "completion": "d", "reward": 0})]),
                   "chat", 2)
    arr = tmp_path / "tb.json"
    arr.write_text("[\n" + json.dumps(_tb(1)) + ",\n" + json.dumps({**_tb(9), "info": {"p": pad}}) + ",\n"
                   + json.dumps(_tb(2)) + "\n]\n")
    out["taubench"] = (arr, "taubench", 3)
    vf = tmp_path / "vf"
    shutil.copytree(DATA / "verifiers" / "results", vf)
    rows = [json.loads(x) for x in (vf / "results.jsonl").read_text().splitlines()]
    rows[1]["answer"] = pad
    _write_lines(vf / "results.jsonl", [json.dumps(x) for x in rows])
    out["verifiers"] = (vf, "verifiers", 2)
    return out


@pytest.mark.parametrize("kind", ["native", "native-per-record", "chat", "taubench", "verifiers"])
def test_a_record_over_the_limit_is_quarantined_and_the_rest_ingested(tmp_path: Path, monkeypatch, kind):
    path, fmt, line = _long_files(tmp_path, 300_000)[kind.split("-")[0]]
    r, q = _ingest(path, tmp_path / "st", fast=kind != "native-per-record", monkeypatch=monkeypatch, fmt=fmt,
                   max_record_bytes=100_000)
    assert r.quarantined == 1 and r.episodes >= 2, q
    assert q[0]["line"] == line and "longer than 100,000 bytes" in q[0]["reason"]
    assert len(q[0]["record"]) <= 2100  # what the quarantine keeps of it: its start
    r2, _ = _ingest(path, tmp_path / "st2", fast=kind != "native-per-record", monkeypatch=monkeypatch, fmt=fmt,
                    max_record_bytes=1_000_000)
    assert r2.quarantined == 0 and r2.episodes == r.episodes + 1


def test_files_read_whole_are_bounded_as_a_whole(tmp_path: Path):
    """tau2 results and ART YAML are one document each: a file over the limit is quarantined whole."""
    tau2 = tmp_path / "tau2.json"
    shutil.copy(DATA / "tau2_airline_oracle_4trials.json", tau2)
    r, q = _ingest(tau2, tmp_path / "st", fmt="tau2", max_record_bytes=100_000)
    assert r.episodes == 0 and "longer than 100,000 bytes" in q[0]["reason"] and q[0]["file"] == str(tau2)
    r, _ = _ingest(tau2, tmp_path / "st2", fmt="tau2", max_record_bytes=1_000_000)
    assert r.episodes > 0
    yml = tmp_path / "0002.yaml"
    shutil.copy(DATA / "art" / "legacy" / "0002.yaml", yml)
    r, q = _ingest(yml, tmp_path / "st3", fmt="art", max_record_bytes=100)
    assert r.episodes == 0 and "longer than 100 bytes" in q[0]["reason"]


_CHILD = """
import resource, sys
from pathlib import Path
from calib.ingest import ingest_file
from calib.store import Store
r = ingest_file(Store(Path(sys.argv[2])), Path(sys.argv[1]), max_record_bytes=1 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, r.episodes, r.quarantined, *r.reasons)
"""


def _peak_kib(src: Path, store: Path) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(store)], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    return int(out[0]), out[1]


@pytest.mark.parametrize("kind", ["jsonl", "json-array"])
def test_peak_memory_is_bounded_by_the_limit_not_by_the_line(tmp_path: Path, kind):
    """A 50 MB record with a 1 MiB limit: the child's peak RSS stays within a few MB of the same ingest
    of a tiny file (it used to take ten times the line)."""
    big, tiny = tmp_path / f"big.{kind}", tmp_path / f"tiny.{kind}"
    pad = "x" * 50_000_000
    if kind == "jsonl":
        _write_lines(big, [json.dumps(_ep("t1")), json.dumps(_ep("big", info={"p": pad})), json.dumps(_ep("t2"))])
        _write_lines(tiny, [json.dumps(_ep("t1")), json.dumps(_ep("t2"))])
    else:
        big.write_text("[" + json.dumps(_tb(1)) + ",\n" + json.dumps({**_tb(9), "info": {"p": pad}}) + ",\n"
                       + json.dumps(_tb(2)) + "]")
        tiny.write_text("[" + json.dumps(_tb(1)) + ",\n" + json.dumps(_tb(2)) + "]")
    base, _ = _peak_kib(tiny, tmp_path / "st-tiny")
    peak, summary = _peak_kib(big, tmp_path / "st-big")
    assert summary.startswith("2 1 ") and "longer than 1,048,576 bytes" in summary, summary
    assert peak - base < 16 * 1024, f"peak RSS {peak} KiB against {base} KiB for the tiny file"


def _address_space_cap() -> None:  # in the child: a regression fails there with MemoryError, not the machine
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_path_that_is_not_a_file_or_folder_is_refused_up_front(tmp_path: Path, special, skip_or_fail):
    """/dev/zero never ends and has no newline, a FIFO without a writer blocks: both are refused in one
    line before anything is opened or created. In a child process with a 2 GiB address space and a
    timeout, so that a regression fails this test rather than exhausting the machine's memory."""
    if special == "fifo":
        special = str(tmp_path / "pipe")
        os.mkfifo(special)
    elif not Path(special).exists():
        skip_or_fail("no /dev/zero on this system")
    res = subprocess.run([sys.executable, "-m", "calib", "ingest", special, "--store", str(tmp_path / "st")],
                         check=False, capture_output=True, text=True, timeout=120, preexec_fn=_address_space_cap)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "not a regular file or folder" in res.stdout + res.stderr and "Traceback" not in res.stdout + res.stderr
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("value,code", [("64MiB", 0), ("500KB", 0), ("1000000", 0), ("0", 2), ("-5", 2),
                                        ("1.5MB", 2), ("lots", 2)])
def test_max_record_bytes_takes_a_size(tmp_path: Path, value, code):
    src = _write_lines(tmp_path / "g.jsonl", [json.dumps(_ep("t1"))])
    res = runner.invoke(app, ["ingest", str(src), "--store", str(tmp_path / "st"), "--max-record-bytes", value])
    assert res.exit_code == code, res.output
    if code:
        assert "--max-record-bytes" in res.output and "expected a positive size" in res.output
        assert not (tmp_path / "st").exists()


# ----------------------------------------------------------------------------- item 5: --success-threshold


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_success_threshold_is_refused(tmp_path: Path, value):
    vf = DATA / "verifiers" / "results"
    res = runner.invoke(app, ["ingest", str(vf), "--store", str(tmp_path / "st"), "--success-threshold", value])
    assert res.exit_code == 2 and "--success-threshold" in res.output and "finite" in res.output
    assert not (tmp_path / "st").exists()
    with pytest.raises(UsageError, match="finite"):
        ingest_file(Store(tmp_path / "st2"), vf, success_threshold=float(value))


# ----------------------------------------------------------------------------- item 10: refusals, cut files


@pytest.mark.parametrize("extra", [["--format", "bogus"], ["{missing}"], ["{dir}"]])
def test_bad_arguments_are_refused_before_the_store_is_created(tmp_path: Path, extra):
    """Every path and option is checked first: no store folder, no "created a new store"."""
    good = _write_lines(tmp_path / "good.jsonl", [json.dumps(_ep("t1"))])
    (tmp_path / "adir").mkdir()
    args = [x.format(missing=tmp_path / "missing.jsonl", dir=tmp_path / "adir") for x in extra]
    res = runner.invoke(app, ["ingest", str(good), *args, "--store", str(tmp_path / "st")])
    assert res.exit_code == 2, res.output
    assert "created a new store" not in res.output and not (tmp_path / "st").exists()


def _cut_after_first(path: Path, keep: int):
    """An on_progress callback that cuts ``path`` to ``keep`` bytes the first time it is called."""
    done = []

    def cb(_n: int) -> None:
        if not done:
            done.append(True)
            os.truncate(path, keep)
    return cb


@pytest.mark.parametrize("where", ["mid-record", "line-end"])
@pytest.mark.parametrize("kind", ["fast-path", "per-record", "taubench-array"])
def test_a_file_cut_while_it_is_read_commits_what_came_before_and_says_so(tmp_path: Path, monkeypatch, kind, where):
    """Three records of 700 kB (more than a read-ahead buffer). After the first is read, the file is cut
    in the third (or right after the second): the first two are committed, the cut is quarantined at
    the third line (element), and the result says the file ended early."""
    import calib.store.writer as writer_mod

    monkeypatch.setattr(writer_mod, "CHUNK_EPISODES", 1)  # the fast path reads one line per chunk
    monkeypatch.setattr(ci, "_FAST_OFF", kind == "per-record")
    pad = "p" * 700_000
    if kind == "taubench-array":
        parts = ["[" + json.dumps({**_tb(1), "info": {"p": pad}}) + ",\n",
                 json.dumps({**_tb(2), "info": {"p": pad}}) + ",\n", json.dumps({**_tb(3), "info": {"p": pad}}) + "]\n"]
        src = tmp_path / "r.json"
    else:
        parts = [json.dumps(_ep(f"t{k}", info={"p": pad})) + "\n" for k in (1, 2, 3)]
        src = tmp_path / "r.jsonl"
    src.write_text("".join(parts))
    keep = len(parts[0]) + len(parts[1]) + (len(parts[2]) // 2 if where == "mid-record" else 0)
    r = ingest_file(Store(tmp_path / "st"), src, on_progress=_cut_after_first(src, keep))
    assert r.episodes == 2 and r.ended_early == f"{src}:3"
    q = _quarantine(r)
    assert q[-1]["line"] == 3 and "ended early" in q[-1]["reason"] and q[-1]["file"] == str(src)
    assert Store(tmp_path / "st").query("SELECT count(*) AS n FROM episodes")["n"][0] == 2


def test_calib_ingest_exits_1_when_a_file_was_cut(tmp_path: Path, monkeypatch):
    pad = "p" * 700_000
    parts = [json.dumps(_ep(f"t{k}", info={"p": pad})) + "\n" for k in (1, 2, 3)]
    src = tmp_path / "r.jsonl"
    src.write_text("".join(parts))
    monkeypatch.setattr(ci, "_FAST_OFF", True)
    real = ci.ingest_file

    def cutting(store, path, *, on_progress=None, **kw):
        cut = _cut_after_first(path, len(parts[0]) + len(parts[1]) + 1000)

        def both(n: int) -> None:
            cut(n)
            if on_progress is not None:
                on_progress(n)
        return real(store, path, on_progress=both, **kw)

    monkeypatch.setattr(ci, "ingest_file", cutting)
    res = runner.invoke(app, ["ingest", str(src), "--store", str(tmp_path / "st")])
    assert res.exit_code == 1, res.output
    assert "ended early" in res.output and "2 episode(s) before the cut were ingested" in res.output
    assert Store(tmp_path / "st").query("SELECT count(*) AS n FROM episodes")["n"][0] == 2


def test_the_documented_limits_are_the_code_s():
    """docs/importing.md, docs/store.md and `calib ingest --help` name the limits the code applies."""
    from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES, parse_size

    importing = (ROOT / "docs" / "importing.md").read_text()
    store_doc = (ROOT / "docs" / "store.md").read_text()
    help_text = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"}).output
    assert f"nested deeper than {MAX_DEPTH} levels" in importing and f"deeper than {MAX_DEPTH} levels" in store_doc
    assert f"deeper than {MAX_DEPTH} levels" in help_text
    assert "(default `64MiB`" in importing and parse_size("64MiB") == DEFAULT_MAX_RECORD_BYTES
    assert "[default: 64MiB]" in help_text


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "per-record"])
def test_deep_json_text_in_native_arguments_is_quarantined(tmp_path: Path, monkeypatch, fast):
    """OpenAI-form arguments are JSON text inside the record: a deep one is refused with the same words
    (the fast path hands nested arguments to the per-record path)."""
    call = {"id": "c1", "type": "function", "function": {"name": "get_user_details", "arguments": DEEP_OBJECT}}
    bad = _ep("bad", messages=[{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": None, "tool_calls": [call]},
                               {"role": "tool", "tool_call_id": "c1", "content": "{}"},
                               {"role": "assistant", "content": "done"}])
    src = _write_lines(tmp_path / "a.jsonl", [json.dumps(_ep("t1")), json.dumps(bad)])
    r, q = _ingest(src, tmp_path / "st", fast=fast, monkeypatch=monkeypatch)
    assert (r.episodes, r.quarantined) == (1, 1)
    assert q[0]["line"] == 2 and "arguments is " + TOO_DEEP in q[0]["reason"]


def _random_value(rng, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice([1, 2.5, -31415, 1e-7, 'a"b\\c]}\n', "x" * rng.randint(0, 300), None, True, "é[{"])
    if r < 0.65:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f'k{i}"': _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def test_the_array_reader_on_random_arrays(tmp_path: Path):
    """Whatever the chunk size and the limit: every element within the limit comes back equal, at the
    line where it starts; every one over it is reported as too long and the array goes on. (Chunks of
    3 characters also cut numbers: "2.5" used to come back as 2.)"""
    import random

    rng = random.Random(5)
    for _ in range(300):
        els = [_random_value(rng) for _ in range(rng.randint(1, 6))]
        limit, chunk = rng.choice([50, 200, 10 ** 6]), rng.choice([3, 7, 64, 1 << 20])
        text, starts = "[\n", []
        for k, e in enumerate(els):
            starts.append(text.count("\n") + 1)
            text += json.dumps(e, indent=rng.choice([None, 1]), ensure_ascii=rng.random() < 0.5)
            text += ",\n" if k < len(els) - 1 else "\n]"
        (tmp_path / "a.json").write_text(text, encoding="utf-8")
        got = list(iter_json_array(tmp_path / "a.json", chunk_size=chunk, max_bytes=limit))
        assert [g[0] for g in got] == starts
        for e, (_, obj, err, _) in zip(els, got):
            size = len(json.dumps(e, ensure_ascii=False).encode())
            assert (obj == e and size <= 4 * limit) if err is None else ("longer than" in err and 4 * size > limit)


def test_the_writer_flushes_by_bytes_as_well_as_by_count(tmp_path, monkeypatch):
    """Large accepted records do not pile up to CALIB_INGEST_CHUNK episodes: a part is written once the
    buffered text passes CHUNK_BYTES (here 200 kB: about four 50 kB records)."""
    import calib.store.writer as writer_mod
    from calib.store import Store

    monkeypatch.setattr(writer_mod, "CHUNK_BYTES", 200_000)
    recs = []
    for i in range(10):
        recs.append({"episode_id": f"big{i}", "run_id": "r", "task_id": "t", "outcome": 1.0, "success": True,
                     "messages": [{"role": "user", "content": "x" * 50_000}, {"role": "assistant", "content": "ok"}]})
    st = Store(tmp_path / "s")
    st.add_episodes(recs, source="mem")
    parts = sorted((tmp_path / "s" / "parts").glob("*/episodes-*.parquet"))
    assert len(parts) == 3 and st.count() == 10  # flushed after records 4 and 8, then the rest at commit
