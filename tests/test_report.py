"""The HTML report without a browser: escaping, CSP, the numbers against analysis.json, sampling caps,
history, errors and the CLI. (tests/test_report_browser.py drives real Chromium.)"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.errors import CalibError
from calib.report import ReportConfig, build_report, write_report
from calib.report.gather import analysis_for_store
from calib.report.safe import content_security_policy, json_for_script, plain, script_hash
from calib.sample_episodes import synthetic_records
from calib.store import Store

SECTIONS = ("summary", "signals", "tiers", "diagnostics", "forest", "positions", "distributions", "advantages", "history", "spec", "episodes")
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    '<a href="javascript:window.__pwned=3">click me</a>',
)


# ----------------------------------------------------------------------------- fixtures


def _records(n_groups: int, group_size: int, *, seed: int = 0, run_id: str = "r1", iteration: int = 0):
    return list(synthetic_records(n_groups, group_size, seed=seed, run_id=run_id, iteration=iteration))


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Store:
    """12 tasks x 6 episodes with every built-in signal computed, and one message full of markup."""
    st = Store(tmp_path_factory.mktemp("report") / "store")
    recs = _records(12, 6, seed=3)
    recs[0]["messages"][1]["content"] = "Hello " + " ".join(PAYLOADS)
    st.add_episodes(recs, source="test")
    return st


@pytest.fixture(scope="module")
def analysed(small_store, tmp_path_factory):
    """(analysis dict as read back from analysis.json, proposed spec, analysis.json path)."""
    analysis, spec = analysis_for_store(small_store)
    path = tmp_path_factory.mktemp("analysis") / "analysis.json"
    path.write_text(json.dumps(analysis, allow_nan=False))
    return json.loads(path.read_text()), spec, path


@pytest.fixture(scope="module")
def html(small_store, analysed) -> str:
    analysis, spec, _ = analysed
    text, _ = build_report(small_store, analysis, spec=spec)
    return text


class _Collect(HTMLParser):
    """Start tags with attributes, plus the text of <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.tags.append((tag, d))
        if tag == "script":
            self._in_script = d
            self.scripts.append((d, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(html_text: str) -> _Collect:
    p = _Collect()
    p.feed(html_text)
    return p


def embedded(html_text: str, element_id: str):
    for attrs, text in parse(html_text).scripts:
        if attrs.get("id") == element_id:
            return json.loads(text)
    raise AssertionError(f"no <script id={element_id}>")


def table_cells(html_text: str) -> dict[str, dict[str, dict[str, str | None]]]:
    """{signal: {column key: attributes of its cell}} from the signal table."""
    out: dict[str, dict[str, dict[str, str | None]]] = {}
    current = None
    for tag, attrs in parse(html_text).tags:
        if tag == "tr" and "data-signal" in attrs:
            current = out.setdefault(attrs["data-signal"], {})
        elif tag in ("td", "th") and current is not None and "data-key" in attrs and "data-value" in attrs:
            current[attrs["data-key"]] = attrs
    return out


def _f(v: str | None) -> float | None:
    return None if v in (None, "") else float(v)


# ----------------------------------------------------------------------------- escaping and CSP


def test_json_for_script_escapes_everything_that_could_end_the_block():
    obj = {"a": "</script><script>alert(1)</script>", "b": "<!-- x -->", "c": "a & b > c", "d": "x\u2028y\u2029z",
           "e": float("nan"), "f": np.float32(0.5), "g": np.arange(3)}
    text = json_for_script(obj)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    back = json.loads(text)
    assert back["a"] == obj["a"] and back["d"] == obj["d"] and back["c"] == obj["c"]
    assert back["e"] is None and back["f"] == 0.5 and back["g"] == [0, 1, 2]


def test_plain_turns_nan_and_numpy_into_json_values():
    assert plain({"x": [np.nan, np.inf, 1.0], "y": (np.int64(2),)}) == {"x": [None, None, 1.0], "y": [2]}


def test_csp_forbids_loads_and_names_the_script_by_hash():
    csp = content_security_policy(["console.log(1)"])
    assert "default-src 'none'" in csp
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(b"console.log(1)").digest()).decode()
    assert script_hash("console.log(1)") == f"'sha256-{digest}'"


def test_page_csp_matches_its_only_executable_script(html):
    p = parse(html)
    metas = [a for t, a in p.tags if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert len(metas) == 1
    csp = metas[0]["content"]
    executable = [text for attrs, text in p.scripts if attrs.get("type") != "application/json"]
    assert len(executable) == 1
    assert script_hash(executable[0]) in csp
    assert "default-src 'none'" in csp and "img-src data:" in csp


def test_page_loads_nothing_from_outside(html):
    for tag, attrs in parse(html).tags:
        for key in ("src", "href", "action", "data"):
            v = attrs.get(key)
            if v is not None and tag != "object":
                assert v.startswith(("data:", "#")), f"<{tag} {key}={v!r}>"
    assert not re.search(r"(?i)\b(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html.replace("http://www.w3.org/", ""))
    assert "@import" not in html and "url(http" not in html


def test_untrusted_text_never_appears_as_markup(html):
    for payload in PAYLOADS:
        assert payload not in html
    assert html.count("<script") == 3  # two JSON data blocks and the page's own script
    assert "javascript:" not in re.sub(r"<script type=\"application/json\".*?</script>", "", html, flags=re.DOTALL)
    eps = embedded(html, "calib-episodes")
    texts = [m["content"] for e in eps for m in e["messages"]]
    assert any(all(p in t for p in PAYLOADS) for t in texts), "the payload episode should be in the browser"


def test_script_never_uses_innerhtml():
    js = (Path(__file__).parents[1] / "calib" / "report" / "static" / "report.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.strip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code


# ----------------------------------------------------------------------------- content


def test_every_section_is_present(html):
    ids = {a.get("id") for _, a in parse(html).tags}
    for s in SECTIONS:
        assert s in ids
    assert html.count("<svg") >= 4  # forest, positions, distributions, scatter (history needs iterations)


def test_table_numbers_equal_analysis_json(html, analysed):
    _analysis, _, path = analysed
    doc = json.loads(path.read_text())  # the file, not the dict in memory
    mode = embedded(html, "calib-report-data")["mode"]
    cells = table_cells(html)
    assert list(cells) == [s["signal"] for s in doc["signals"]]
    for s in doc["signals"]:
        c = cells[s["signal"]]
        for key in ("auc", "group_auc", "pb_corr", "dead_share", "proposed_weight"):
            assert _f(c[key]["data-value"]) == s[key], (s["signal"], key)
        assert [_f(c["auc"]["data-lo"]), _f(c["auc"]["data-hi"])] == s["auc_ci"]
        assert [_f(c["group_auc"]["data-lo"]), _f(c["group_auc"]["data-hi"])] == s["group_auc_ci"]
        assert c["verdict"]["title"] == s["reason"]
        assert int(c["informative_groups"]["data-value"]) == s["informative_groups"]
        assert int(c["informative_groups"]["data-n-groups"]) == s["n_groups"]
        assert _f(c["pb_corr"]["data-p"]) == s["pb_p"]
        assert _f(c["sign_agreement"]["data-value"]) == s["sign_agreement"][mode]
        assert _f(c["misaligned_mass"]["data-value"]) == s["misaligned_mass"][mode]
        assert c["verdict"]["data-value"] == s["verdict"]
    assert embedded(html, "calib-report-data")["analysis"] == doc


def _rows_by(html_text: str, row_attr: str) -> dict[str, dict[str, dict[str, str | None]]]:
    """{row id: {column key: cell attributes}} for the rows that carry ``row_attr``."""
    out: dict[str, dict[str, dict[str, str | None]]] = {}
    current = None
    for tag, attrs in parse(html_text).tags:
        if tag == "tr":
            current = out.setdefault(attrs[row_attr], {}) if row_attr in attrs else None
        elif tag in ("td", "th") and current is not None and "data-key" in attrs:
            current[attrs["data-key"]] = attrs
    return out


def test_paper_tables_equal_analysis_json(html, analysed):
    """Tier alignment (the paper's Tables 1 and 4) and advantage diagnostics (its Table 2) show the
    numbers of analysis.json."""
    doc = json.loads(analysed[2].read_text())
    tiers = _rows_by(html, "data-tier")
    assert set(tiers) == set(doc["tier_alignment"]) and tiers
    for name, t in doc["tier_alignment"].items():
        c = tiers[name]
        for key in ("weight", "mean_A_I", "mean_A_total", "share_success", "share_failure", "gap"):
            assert _f(c[key]["data-value"]) == t[key], (name, key)
        assert c["aligned"]["data-value"] == {True: "yes", False: "no", None: "n/a"}[t["aligned"]]
    diag = _rows_by(html, "data-mode")
    assert list(diag) == ["mt_grpo", "gtpo", "gtpo_hybrid"]
    for mode, d in doc["advantage_diagnostics"].items():
        for key in ("mismatches", "corr_adv_outcome", "dead_turn_share", "gold_soft_share"):
            assert _f(diag[mode][key]["data-value"]) == d[key], (mode, key)


def test_displayed_numbers_round_the_exact_values(html):
    m = re.search(r'<td data-key="auc" data-value="([^"]*)" data-lo="([^"]*)" data-hi="([^"]*)">([^<]*) '
                  r'<span class="ci">\[([^,]*), ([^\]]*)\]</span></td>', html)
    assert m
    value, lo, hi, shown, shown_lo, shown_hi = m.groups()
    assert f"{float(value):.3f}" == shown and f"{float(lo):.2f}" == shown_lo and f"{float(hi):.2f}" == shown_hi


def test_summary_counts_and_pass_k_match_calib_eval(html, small_store):
    from calib.rollout.evaluate import evaluate_run

    summary = embedded(html, "calib-report-data")["summary"]
    ev = evaluate_run(small_store, "r1")
    assert summary["episodes"] == 72 and summary["groups"] == 12 and summary["tasks"] == 12
    assert summary["success_rate"] == pytest.approx(ev.success_rate)
    for k, v in ev.pass_hat_k.items():
        if k <= 8:
            assert summary["pass_hat_k"][str(k)] == pytest.approx(v)
    eps = small_store.query("SELECT group_id, success FROM episodes")
    mixed = eps.groupby("group_id")["success"].agg(lambda s: 0 < s.sum() < len(s)).sum()
    assert summary["informative_groups"] == int(mixed)


def test_scatter_agreement_is_the_analysis_sign_agreement(small_store, analysed):
    """With every informative group sampled, each signal panel's agreement is the metric in the table."""
    from calib.report import data as D
    from calib.report.advantage_view import scatter_panels

    analysis, spec, _ = analysed
    names = [s["signal"] for s in analysis["signals"]]
    con = D.scoped_connection(small_store, None)
    try:
        sample = D.sample_groups(con, names, n_groups=10_000)
    finally:
        con.close()
    adv = spec.advantage
    panels = scatter_panels(sample, spec.turn_weights(), mode=adv.mode, gamma=adv.gamma, lam=adv.lam,
                            turn_norm=adv.turn_norm, max_points=50)
    assert len(panels) == 1 + len(names)
    assert all(p.x.size <= 50 for p in panels)
    by_name = {p.title.removesuffix(" alone"): p.agreement for p in panels[1:]}
    for s in analysis["signals"]:
        want = s["sign_agreement"][adv.mode]
        if want is None:
            assert np.isnan(by_name[s["signal"]])
        else:
            assert by_name[s["signal"]] == pytest.approx(want, abs=1e-12)


def test_spec_yaml_is_the_proposed_spec(html, analysed):
    _, spec, _ = analysed
    import html as html_mod

    m = re.search(r'<pre id="spec-yaml">(.*?)</pre>', html, flags=re.DOTALL)
    assert m and html_mod.unescape(m.group(1)) == spec.to_yaml()


def test_browser_sample_respects_caps_and_takes_both_outcomes(small_store, analysed):
    analysis, spec, _ = analysed
    cfg = ReportConfig(max_episodes=9, per_task=1, max_message_chars=100)
    text, info = build_report(small_store, analysis, spec=spec, config=cfg)
    eps = embedded(text, "calib-episodes")
    assert len(eps) == info["episodes_embedded"] == 9
    per_cell = pd.DataFrame([(e["task_id"], e["success"]) for e in eps]).value_counts()
    assert per_cell.max() == 1  # per_task=1: one success and one failure per task at most
    assert len({e["task_id"] for e in eps}) >= 5  # breadth first: many tasks before a second from any
    for e in eps:
        assert [m.get("turn") for m in e["messages"] if "turn" in m] == list(range(e["n_turns"]))
        for m in e["messages"]:
            assert len(m["content"]) <= 100
            if "cut" in m:
                assert m["cut"] > 0
            if "turn" in m:
                assert set(m["signals"]) <= {s["signal"] for s in analysis["signals"]}


def test_turn_signal_values_in_the_browser_are_the_stored_ones(html, small_store):
    eps = embedded(html, "calib-episodes")
    e = eps[0]
    stored = small_store.query(
        "SELECT turn_idx, signal, value FROM signals WHERE episode_id = ? AND value IS NOT NULL", [e["episode_id"]]
    )
    shown = {(m["turn"], k): v for m in e["messages"] if "turn" in m for k, v in m["signals"].items()}
    assert shown == {(int(r.turn_idx), r.signal): r.value for r in stored.itertuples()}


def test_no_browser_when_max_episodes_is_zero(small_store, analysed):
    analysis, spec, _ = analysed
    text, info = build_report(small_store, analysis, spec=spec, config=ReportConfig(max_episodes=0))
    assert info["episodes_embedded"] == 0 and embedded(text, "calib-episodes") == []


def test_output_is_reproducible(small_store, analysed, monkeypatch):
    analysis, spec, _ = analysed
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, _ = build_report(small_store, analysis, spec=spec)
    b, _ = build_report(small_store, analysis, spec=spec)
    assert a == b and "2023-11-14 22:13 UTC" in a


def test_svg_ids_are_unique_across_figures(html):
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("mode", ["grpo", "mt_grpo", "gtpo_hybrid"])
def test_mode_switches_the_agreement_column(small_store, analysed, mode):
    analysis, _spec, _ = analysed
    text, info = build_report(small_store, analysis, config=ReportConfig(mode=mode))
    assert info["mode"] == mode
    cells = table_cells(text)
    for s in analysis["signals"]:
        want = s["sign_agreement"].get(mode)
        assert _f(cells[s["signal"]]["sign_agreement"]["data-value"]) == want
    assert f"mode: {mode}" in text  # the spec shown uses the chosen mode


# ----------------------------------------------------------------------------- history


def test_history_from_iterations_and_calibration_table(tmp_path):
    from calib.report import data as D

    st = Store(tmp_path / "store")
    st.add_episodes(_records(6, 4, seed=0, iteration=0) + _records(6, 4, seed=1, iteration=1), source="t")
    con = D.scoped_connection(st, None)
    try:
        hist = D.iteration_history(con, st)
        assert hist["weights"] == {}
        want = st.query("SELECT iteration, avg(success::DOUBLE) AS s FROM episodes GROUP BY 1 ORDER BY 1")
        assert hist["success"] == [{"label": "r1", "iteration": [0, 1], "success_rate": want["s"].tolist()}]
        # the loop's table: one row per iteration, weights as JSON text
        st.write_table("calibration_history", pd.DataFrame({
            "iteration": [1, 0], "weights": ['{"gold_match": 0.2, "read_only": -0.05}', '{"gold_match": 0.1}'],
            "rollout_success": [0.5, 0.25], "eval_success": [0.75, None]}))
        hist = D.iteration_history(con, st)
    finally:
        con.close()
    assert hist["weights"] == {"gold_match": {"iteration": [0, 1], "weight": [0.1, 0.2]},
                               "read_only": {"iteration": [1], "weight": [-0.05]}}
    assert hist["success"][0]["success_rate"] == [0.25, 0.5] and hist["success"][1]["iteration"] == [1]
    analysis, spec = analysis_for_store(st)
    text, _ = build_report(st, analysis, spec=spec)
    assert 'aria-label="history plot"' in text and "turn-reward weight" in text


def test_long_history_table_is_read_too(tmp_path):
    from calib.report.data import _history_weights

    long = pd.DataFrame({"iteration": [0, 1, 1], "signal": ["a", "a", "b"], "weight": [0.1, 0.2, 0.0]})
    assert _history_weights(long) == {"a": {"iteration": [0, 1], "weight": [0.1, 0.2]},
                                      "b": {"iteration": [1], "weight": [0.0]}}


def test_single_iteration_has_a_note_instead_of_a_history(html):
    assert 'aria-label="history plot"' not in html
    assert "single iteration" in html


# ----------------------------------------------------------------------------- errors and entry points


def test_unknown_run_and_empty_store_raise_clear_errors(small_store, analysed, tmp_path):
    analysis, spec, _ = analysed
    with pytest.raises(CalibError, match="nope.*runs in this store: r1"):
        build_report(small_store, analysis, runs=["nope"], spec=spec)
    with pytest.raises(CalibError, match="holds no episodes"):
        build_report(Store(tmp_path / "empty"), analysis, spec=spec)


def test_bad_analysis_files_name_the_file(small_store, tmp_path):
    bad = tmp_path / "analysis.json"
    bad.write_text("{not json")
    with pytest.raises(CalibError, match="analysis.json: not valid JSON"):
        write_report(small_store, tmp_path / "r.html", analysis=bad)
    bad.write_text('{"summary": {}}')
    with pytest.raises(CalibError, match="no 'signals' field"):
        write_report(small_store, tmp_path / "r.html", analysis=bad)
    with pytest.raises(CalibError, match="no such file"):
        write_report(small_store, tmp_path / "r.html", analysis=tmp_path / "missing.json")


def test_write_report_is_atomic_and_reports_size(small_store, analysed, tmp_path):
    _, spec, path = analysed
    res = write_report(small_store, tmp_path / "out" / "index.html", analysis=path, spec=spec)
    assert res.path.exists() and res.bytes == res.path.stat().st_size
    assert not list((tmp_path / "out").glob(".*tmp"))
    assert set(res.timings) >= {"summary", "plots", "render"}


def test_cli_report_end_to_end(small_store, analysed, tmp_path):
    _, _, path = analysed
    out = tmp_path / "rep" / "index.html"
    r = CliRunner().invoke(app, ["report", "--store", str(small_store.path), "--analysis", str(path),
                                 "--out", str(out), "--max-episodes", "5", "--mode", "mt_grpo", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["episodes_embedded"] == 5 and Path(info["path"]) == out and out.stat().st_size == info["bytes"]
    assert embedded(out.read_text(), "calib-report-data")["mode"] == "mt_grpo"


def test_cli_report_bad_options_exit_2(small_store, tmp_path):
    r = CliRunner().invoke(app, ["report", "--store", str(small_store.path), "--mode", "ppo",
                                 "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "--mode" in r.output
    r = CliRunner().invoke(app, ["report", "--store", str(small_store.path), "--runs", "nope",
                                 "--out", str(tmp_path / "x.html")])
    assert r.exit_code != 0 and "nope" in r.output


def test_missing_metrics_render_as_na(small_store, analysed):
    """A signal the analysis could not measure (no informative groups, no positions) still renders."""
    import copy

    analysis, spec, _ = analysed
    doc = copy.deepcopy(analysis)
    s = doc["signals"][0]
    for key in ("auc", "group_auc", "pb_corr", "pb_p", "dead_share"):
        s[key] = None
    s["auc_ci"] = s["group_auc_ci"] = [None, None]
    s["sign_agreement"] = {m: None for m in s["sign_agreement"]}
    s["auc_by_position"] = []
    text, _ = build_report(small_store, doc, spec=spec)
    cells = table_cells(text)[s["signal"]]
    assert cells["auc"]["data-value"] == "" and cells["group_auc"]["data-lo"] == ""
    assert re.search(r'data-key="auc" data-value="" data-lo="" data-hi="">n/a <span class="ci">n/a</span>', text)


def test_committed_example_matches_its_analysis_json():
    """reports/example/index.html shows exactly the numbers of reports/example/analysis.json."""
    root = Path(__file__).parents[1] / "reports" / "example"
    if not (root / "index.html").exists():
        pytest.fail("reports/example/index.html is missing: run reports/example/make.sh")
    text = (root / "index.html").read_text(encoding="utf-8")
    doc = json.loads((root / "analysis.json").read_text())
    mode = embedded(text, "calib-report-data")["mode"]
    cells = table_cells(text)
    assert list(cells) == [s["signal"] for s in doc["signals"]]
    for s in doc["signals"]:
        c = cells[s["signal"]]
        assert _f(c["group_auc"]["data-value"]) == s["group_auc"] and c["verdict"]["data-value"] == s["verdict"]
        assert _f(c["sign_agreement"]["data-value"]) == s["sign_agreement"][mode]
        assert _f(c["proposed_weight"]["data-value"]) == s["proposed_weight"]
    assert embedded(text, "calib-episodes") and "Content-Security-Policy" in text
    assert (root / "index.html").stat().st_size < 2_000_000


def test_calib_analyze_html_report_equals_its_analysis_json(small_store, tmp_path):
    """The acceptance check on the real pipeline: `calib analyze --html`, then parse both files."""
    out = tmp_path / "an"
    r = CliRunner().invoke(app, ["analyze", "--store", str(small_store.path), "--out", str(out), "--html"])
    assert r.exit_code == 0, r.output
    text = (out / "report.html").read_text(encoding="utf-8")
    doc = json.loads((out / "analysis.json").read_text())
    data = embedded(text, "calib-report-data")
    assert data["analysis"] == doc
    cells = table_cells(text)
    assert list(cells) == [s["signal"] for s in doc["signals"]]
    for s in doc["signals"]:
        c = cells[s["signal"]]
        for key in ("auc", "group_auc", "pb_corr", "dead_share", "proposed_weight"):
            assert _f(c[key]["data-value"]) == s[key], (s["signal"], key)
        assert [_f(c["auc"]["data-lo"]), _f(c["auc"]["data-hi"])] == s["auc_ci"]
        assert [_f(c["group_auc"]["data-lo"]), _f(c["group_auc"]["data-hi"])] == s["group_auc_ci"]
        assert int(c["informative_groups"]["data-value"]) == s["informative_groups"]
        for key in ("sign_agreement", "misaligned_mass"):
            assert _f(c[key]["data-value"]) == s[key][data["mode"]]
        assert c["verdict"]["data-value"] == s["verdict"]
    import html as html_mod

    spec_text = (out / "reward_spec.yaml").read_text()
    m = re.search(r'<pre id="spec-yaml">(.*?)</pre>', text, flags=re.DOTALL)
    assert html_mod.unescape(m.group(1)) == spec_text
