"""The report in real headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

Loads from file:// with no console error and no request beyond the file itself, shows every
section, sorts the signal table on a real mouse click, runs the episode browser and the copy
button, renders untrusted markup as text (the XSS probe), and writes a non-blank screenshot.
Without Chromium the module skips with a reason, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calib.report import write_report
from calib.report.browser import Chromium, find_chromium
from calib.sample_episodes import synthetic_records
from calib.store import Store

# One worker under pytest-xdist: the module-scoped browser and report are started once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report_browser")]

SECTIONS = ("summary", "signals", "forest", "positions", "distributions", "advantages", "history", "spec", "episodes")
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    '<a href="javascript:window.__pwned=3">click me</a>',
)
PROBE_ID = "probe-<b>episode</b>"
PROBE_TASK = "task-<img src=x onerror=\"window.__pwned=4\">"
PROBE_SIGNAL = '<img src=x onerror="window.__pwned=5">'


@pytest.fixture(scope="module")
def chromium_binary(skip_or_fail) -> str:
    path = find_chromium()
    if path is None:
        skip_or_fail("headless Chromium not found (apt-get install chromium, or set CALIB_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser(chromium_binary):
    with Chromium(chromium_binary) as b:
        yield b


def _probe_records() -> list[dict]:
    """Synthetic episodes, one of which carries markup in every text field a rollout can fill."""
    recs = list(synthetic_records(10, 6, seed=5, run_id="r1"))
    ep = recs[0]
    ep["episode_id"] = PROBE_ID
    for r in recs[:6]:  # the whole group, so it stays one task
        r["task_id"] = PROBE_TASK
    msgs = ep["messages"]
    msgs[1]["content"] = "I need help. " + " ".join(PAYLOADS)
    for m in msgs:
        if m["role"] == "assistant" and not m.get("tool_calls"):
            m["content"] = "Sure: " + PAYLOADS[1]
            break
    for m in msgs:
        if m["role"] == "tool":
            m["content"] = PAYLOADS[0] + " " + PAYLOADS[2]
            break
    for m in msgs:
        if m.get("tool_calls"):
            m["tool_calls"][0]["function"]["arguments"] = '{"user_id": "<script>window.__pwned=6</script>"}'
            break
    return recs


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    """A report of a store with a markup-laden episode, task id and custom signal name."""
    root = tmp_path_factory.mktemp("report_browser")
    st = Store(root / "store")
    st.add_episodes(_probe_records(), source="probe")
    turns = st.query("SELECT episode_id, turn_idx FROM turns")
    turns["value"] = (np.arange(len(turns)) % 3 == 0).astype(float)
    st.write_signals(turns, signal=PROBE_SIGNAL, version="1")
    out = root / "out" / "index.html"
    write_report(st, out)
    return out


@pytest.fixture(scope="module")
def page(browser, report_path):
    return browser.open(report_path)


def test_loads_offline_without_errors_or_requests(page, report_path):
    assert page.evaluate("document.documentElement.getAttribute('data-ready')") == "1"
    assert page.errors == []
    external = [u for u in page.requests if not u.startswith("data:") and u != report_path.resolve().as_uri()]
    assert external == []


def test_csp_refuses_remote_loads(browser, report_path):
    p = browser.open(report_path)  # its own tab: the refusals below are logged as errors
    assert p.evaluate("fetch('https://example.com/x').then(() => 'loaded', () => 'blocked')") == "blocked"
    p.evaluate("(() => { const s = document.createElement('script'); s.textContent = 'window.__pwned = 7';"
               " document.body.appendChild(s); })()")
    assert p.evaluate("typeof window.__pwned") == "undefined"  # an injected inline script does not run
    assert not [u for u in p.requests if "example.com" in u]


def test_every_section_is_present_and_visible(page):
    for s in SECTIONS:
        h = page.evaluate(f"(() => {{ const e = document.getElementById('{s}'); return e ? e.offsetHeight : -1; }})()")
        assert h > 0, s
    n_svg = page.evaluate("document.querySelectorAll('section .plot svg').length")
    assert n_svg >= 4


def _column(page, key: str) -> list:
    return page.evaluate(
        "Array.from(document.querySelectorAll('#signal-table tbody tr'))"
        f".map(r => r.querySelector('[data-key=\"{key}\"]').getAttribute('data-value'))"
    )


def test_signal_table_sorts_on_click(page):
    before = _column(page, "signal")
    page.click('#signal-table th[data-key="group_auc"]')
    vals = [float(v) if v else None for v in _column(page, "group_auc")]
    present = [v for v in vals if v is not None]
    assert len(set(present)) >= 3  # enough distinct values for the order to mean something
    assert present == sorted(present, reverse=True) and vals[: len(present)] == present  # missing last
    assert page.evaluate("document.querySelector('#signal-table th[data-key=\"group_auc\"]').getAttribute('aria-sort')") \
        == "descending"
    page.click('#signal-table th[data-key="group_auc"]')
    vals = [float(v) for v in _column(page, "group_auc") if v]
    assert vals == sorted(vals)
    page.click('#signal-table th[data-key="signal"]')
    names = _column(page, "signal")
    assert names == sorted(names, key=str.lower) and sorted(names) == sorted(before)
    assert page.errors == []


def test_episode_browser_filters_and_shows_episodes(page):
    n_all = page.evaluate("document.querySelectorAll('#ep-list button').length")
    assert n_all > 0
    page.evaluate("(() => { const s = document.getElementById('ep-filter-outcome'); s.value = 'failure';"
                  " s.dispatchEvent(new Event('change')); })()")
    marks = page.evaluate("Array.from(document.querySelectorAll('#ep-list button span')).map(s => s.className)")
    assert marks and set(marks) == {"mark-bad"} and len(marks) < n_all
    page.click("#ep-list li:nth-child(2) button")
    head = page.evaluate("document.querySelector('#ep-detail .ep-head').textContent")
    label = page.evaluate("document.querySelector('#ep-list li:nth-child(2) button').textContent")
    assert label.split(" · ")[-1] in head
    assert page.evaluate("document.querySelectorAll('#ep-detail .msg').length") > 2
    assert page.evaluate("document.querySelectorAll('#ep-detail .chip').length") > 0
    page.evaluate("(() => { const s = document.getElementById('ep-filter-outcome'); s.value = 'all';"
                  " s.dispatchEvent(new Event('change')); })()")
    assert page.errors == []


def test_copy_button_copies_or_selects_without_errors(page):
    page.click("#copy-spec")
    status = ""
    for _ in range(100):  # the clipboard promise settles asynchronously
        status = page.evaluate("document.getElementById('copy-status').textContent")
        if status:
            break
        time.sleep(0.05)
    assert status in ("copied", "selected: press Ctrl+C (Cmd+C) to copy")
    assert page.errors == []


def test_xss_probe_renders_markup_as_text(page):
    # open the probe episode through the list, as a user would
    idx = page.evaluate(
        "Array.from(document.querySelectorAll('#ep-list button')).findIndex(b => b.textContent.includes("
        f"{PROBE_ID!r}))"
    )
    assert idx >= 0, "the probe episode should be in the browser"
    page.click(f"#ep-list li:nth-child({idx + 1}) button")
    text = page.evaluate("document.getElementById('ep-detail').innerText")
    for p in (*PAYLOADS, PROBE_ID, PROBE_TASK, "window.__pwned=6"):
        assert p in text, p
    body = page.evaluate("document.body.innerText")
    assert PROBE_SIGNAL in body  # the custom signal's name, shown in the table as text
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('a[href^=\"javascript\"]').length") == 0
    assert page.evaluate("document.scripts.length") == 3
    assert page.errors == []


def test_screenshot_is_written_and_not_blank(page, tmp_path):
    from PIL import Image

    # The top 3,000 px (header, verdict table, the first plots): software rendering of the whole
    # 8,000 px page took over two minutes of the suite on a 2-core machine.
    path = page.screenshot(tmp_path / "report.png", max_height=3000)
    img = Image.open(io.BytesIO(path.read_bytes())).convert("L")
    px = np.asarray(img, dtype=np.float64)
    assert img.size == (1280, 3000)
    assert px.std() > 10 and (px < 128).mean() > 0.005  # text and plots, not a white page
    # each band of the page has content (a failed plot would leave a white band)
    bands = np.array_split(px, 6)
    assert all(b.std() > 5 for b in bands)


def test_cli_screenshot_flag(report_path, tmp_path, chromium_binary):
    from typer.testing import CliRunner

    from calib.cli import app

    store = report_path.parents[1] / "store"
    r = CliRunner().invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "r.html"),
                                 "--max-episodes", "4", "--screenshot", str(tmp_path / "r.png")],
                           env={"CALIB_CHROMIUM": chromium_binary})
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_section_draws_in_the_browser(browser, tmp_path):
    st = Store(tmp_path / "store")
    st.add_episodes(list(synthetic_records(5, 4, seed=0, iteration=0)) + list(synthetic_records(5, 4, seed=1, iteration=1)),
                    source="t")
    st.write_table("calibration_history", pd.DataFrame(
        {"iteration": [0, 1], "weights": ['{"gold_match": 0.1}', '{"gold_match": 0.25}'],
         "rollout_success": [0.3, 0.6]}))
    out = write_report(st, tmp_path / "index.html").path
    p = browser.open(out)
    assert p.evaluate("document.querySelectorAll('#history svg').length") == 1
    assert p.errors == []
