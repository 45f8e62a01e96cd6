"""`gancli report RUN`: the HTML page of a tiny real run, read as text and loaded in headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from gancli.report import GENERATOR_TAG

TINY = [
    "data.resolution=16", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2", "model.channel_base=128",
    "model.channel_max=16", "model.num_fp16_res=0", "model.conv_clamp=null", "model.mbstd_group_size=2",
    "train.batch=4", "train.image_kimg=1000", "train.snapshot_kimg=0.008", "train.grid_seeds=4",
]
GRIDS = 4  # the run's step-0 and final grids (fakes-000000.png, fakes-000000-step00000004.png), two later ticks copied

pytestmark = pytest.mark.skipif(importlib.util.find_spec("plotly") is None,
                                reason="plotly is not installed (pip install 'gancli[report]')")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data) -> Path:
    """A tiny ADA run of 4 steps (so augment/p and the learning rates are logged), with 3 grids."""
    from gancli.cli import main

    root = tmp_path_factory.mktemp("report")
    args = ["train", "quickstart-ada", "--data", str(tiny_data), "--kimg", "0.016", "--outdir", str(root)]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    (run_dir,) = root.iterdir()
    for kimg in (1, 2):  # a run that long takes minutes on a CPU; its grids are all the report reads of it
        shutil.copy(run_dir / "fakes-000000.png", run_dir / f"fakes-{kimg:06d}.png")
    return run_dir


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_the_log_has_what_the_report_plots(run):
    ticks = [r for r in _records(run) if "event" not in r]
    assert len(ticks) >= 2
    for r in ticks:  # learning rates, the training time so far, ADA's p
        assert r["lr/G"] > 0 and r["lr/D"] > 0 and r["time_s"] > 0 and "augment/p" in r
    assert ticks[-1]["time_s"] >= ticks[0]["time_s"]


def test_report_page_as_text(cli, run):
    result = cli("report", run)
    assert result.code == 0, result
    out = run / "report.html"
    assert f"wrote {out}" in result.out and f"{GRIDS} image grids" in result.out
    page = out.read_text(encoding="utf-8")
    assert GENERATOR_TAG in page
    # nothing fetched: no script, link, img or iframe from the network
    sources = re.findall(r"<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']*)", page)
    assert sources and not [s for s in sources if re.match(r"(https?:)?//", s)], sources
    assert len(re.findall(r"<script\b", page)) >= 2 and "Plotly.newPlot" in page  # plotly.js inline, then the plots
    # one <img class="fake"> per fakes file, each a data URI; reals.png as well
    fakes = re.findall(r'<img class="fake" src="data:image/png;base64,', page)
    assert len(fakes) == len(list(run.glob("fakes-*.png"))) == GRIDS
    assert len(re.findall(r"<img\b", page)) == GRIDS + 1
    # the resolved recipe, its plotted series, the timing
    assert "name: quickstart-ada" in page and "r1_gamma:" in page and "embedded in snapshot-" in page
    for series in ("loss/G", "loss/D", "augment/p", "lr/G", "lr/D", "img_per_s"):
        assert f'"name":"{series}"'.replace("/", "\\u002f") in page, series  # plotly's JSON escapes '/'
    assert "images/s" in page and "training time" in page


def test_report_credits_twemoji_when_the_run_trained_on_the_builtin_emoji(run):
    """The grids of an emoji run show (images derived from) Twemoji artwork: the page says so; a run on
    the user's own images gets no such line."""
    from gancli.report import read_run, render_report

    data = read_run(run)
    assert "Twemoji" not in render_report(data, max_grids=1)
    data.recipe["data"]["source"] = "emoji"
    page = render_report(data, max_grids=1)
    assert '<p class="credit">' in page and "Twemoji by Twitter, Inc." in page and "CC-BY 4.0" in page


def test_report_outputs_are_protected(cli, run, tmp_path):
    assert cli("report", run).code == 0
    assert cli("report", run).code == 0  # our own previous report is replaced
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    result = cli("report", run, "--out", mine)
    assert result.code == 2 and result.err.count("\n") == 1 and "--force" in result.err
    assert mine.read_text() == "<p>my notes</p>"
    assert cli("report", run, "--out", mine, "--force").code == 0
    assert GENERATOR_TAG in mine.read_text()
    result = cli("report", run, "--out", tmp_path / "page.txt")
    assert result.code == 2 and "must end in .html" in result.err
    result = cli("report", run, "--out", tmp_path / "page.html", "--max-grids", "2")
    assert result.code == 0 and f"2 of {GRIDS} image grids" in result.out
    page = (tmp_path / "page.html").read_text()
    assert re.findall(r'data-kimg="([^"]+)"', page) == ["0", "2"]  # the first and the last


def test_report_bad_input(cli, tmp_path, monkeypatch):
    result = cli("report", tmp_path / "missing")
    assert result.code == 2 and result.err == f"error: {tmp_path / 'missing'}: no such run folder\n"
    (tmp_path / "empty").mkdir()
    result = cli("report", tmp_path / "empty")
    assert result.code == 2 and "not a training run folder" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "empty" / "report.html").exists()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real_find_spec(name, *a))
    result = cli("report", tmp_path / "empty")
    assert result.code == 2 and result.err.count("\n") == 1 and "pip install 'gancli[report]'" in result.err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_in_headless_chromium(cli, run, tmp_path):
    """The page loads with no console errors, every plot has points, the slider shows each grid in turn."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (it is in the test extra: pip install -e '.[test]')")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    assert cli("report", run, "--out", out).code == 0
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: errors.append(f"request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
            page.goto(out.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0", timeout=20000)
            traces = page.evaluate("""Array.from(document.querySelectorAll('.js-plotly-plot')).map(d =>
                ({title: d.layout.title.text, points: d.data.map(t => ({name: t.name, n: t.x.length,
                  finite: t.y.every(Number.isFinite)}))}))""")
            names = {t["name"] for plot in traces for t in plot["points"]}
            assert {"loss/G", "loss/D", "augment/p", "lr/G", "img_per_s"} <= names, names
            assert all(t["n"] >= 1 and t["finite"] for plot in traces for t in plot["points"]), traces
            # the drawn SVG has the points too (not just the data)
            assert page.evaluate("document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length") >= len(names)
            assert page.evaluate("document.querySelectorAll('img.fake').length") == GRIDS
            loaded = page.evaluate("Array.from(document.querySelectorAll('img')).every(i => i.complete && i.naturalWidth > 0)")
            assert loaded
            shown = "Array.from(document.querySelectorAll('img.fake')).map(i => getComputedStyle(i).display !== 'none')"
            assert page.evaluate(shown) == [False] * (GRIDS - 1) + [True]  # the last tick first
            page.fill("#tick", "0")
            page.dispatch_event("#tick", "input")
            assert page.evaluate(shown) == [True] + [False] * (GRIDS - 1)
            assert page.inner_text("#tick-label").startswith("kimg 0")
        finally:
            browser.close()
    assert errors == []
