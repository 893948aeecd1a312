"""The HTML pages (report, history, compare) opened in a real browser: headless Chromium at 1280 x 800.

Each page must load every image (naturalWidth above 0), log no console error, exception or failed load, keep
every table inside the window or inside a box that scrolls it (never a page wider than the window), and show
its headline in the first screen. Screenshots (the first screen and the whole page) are saved under the
test's temporary directory, and under $LSTM_BENCH_SCREENSHOTS when that is set, to look at.
Skipped where no Chromium is installed (.ci/run installs Debian's `chromium`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.analysis import compare, history, report
from bench.atomic import write_json
from tests.fixtures.cdp import Chromium, find_chromium
from tests.fixtures.results_factory import make_compare_fixture, make_report_fixture

WIDTH, HEIGHT = 1280, 800
CHROMIUM = find_chromium()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium; "
                                                          ".ci/run does it)")]

MEASURE = """(() => {
  const scroller = (el) => {
    for (let box = el.parentElement; box && box !== document.body; box = box.parentElement) {
      if (['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) return box;
    }
    return null;
  };
  const tables = [...document.querySelectorAll('table')].map((t, i) => {
    const box = scroller(t);
    return {index: i, right: t.getBoundingClientRect().right, boxRight: box ? box.getBoundingClientRect().right : null,
            head: t.rows[0] ? t.rows[0].innerText.replace(/\\s+/g, ' ').slice(0, 60) : ''};
  });
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth}));
  return {width: window.innerWidth, height: window.innerHeight, page: document.documentElement.scrollWidth,
          tables, images};
})()"""

HEADLINE = """((text) => {
  const el = [...document.querySelectorAll('h1,h2,h3,p,li')].find(e => e.textContent.trim().startsWith(text));
  if (!el) return null;
  const next = el.tagName === 'H2' && el.nextElementSibling ? el.nextElementSibling : el;
  return {top: el.getBoundingClientRect().top, firstLine: next.getBoundingClientRect().top};
})"""


def problems(page, headline: str) -> list[str]:
    """What a reader would trip over on the page, as sentences (empty: none)."""
    found = [f"console/network error: {e}" for e in page.errors]
    seen = page.evaluate(MEASURE)
    found += [f"image {i['src']} did not load (naturalWidth 0)" for i in seen["images"] if not i["width"] > 0]
    for t in seen["tables"]:
        inside = (t["right"] <= seen["width"] + 0.5
                  or (t["boxRight"] is not None and t["boxRight"] <= seen["width"] + 0.5))
        if not inside:
            found.append(f"table {t['index']} ({t['head']}) reaches {t['right']:.0f} px in a {seen['width']}-px "
                         "window without a scroll box of its own")
    if seen["page"] > seen["width"]:
        found.append(f"the page is {seen['page']} px wide in a {seen['width']}-px window")
    where = page.evaluate(f"{HEADLINE}({headline!r})")
    if where is None:
        found.append(f"no headline starting {headline!r}")
    elif not where["firstLine"] + 20 <= seen["height"]:
        found.append(f"the headline {headline!r} starts at {where['firstLine']:.0f} px, below the first screen "
                     f"({seen['height']} px)")
    return found


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """report.html, history.html and compare.html from fixture results: page name -> (file, headline text)."""
    base = tmp_path_factory.mktemp("pages")
    swept = make_report_fixture(base / "report")
    report.write_report(swept)
    before = make_compare_fixture(base / "before", 1)
    after = make_compare_fixture(base / "after", 2, step_factor={"loop": 2.0})
    for directory, commit, when in ((before, "a" * 40, "2024-02-01T00:00:00+00:00"),
                                    (after, "b" * 40, "2024-02-02T00:00:00+00:00")):
        env = __import__("json").loads((directory / "env.json").read_text())
        write_json(directory / "env.json", {**env, "git_commit": commit, "git_commit_time": when, "git_repo": ""})
    compare.write_compare(before, after, out=base / "compare")
    history.write_history([str(before), str(after), str(swept)], base / "history")
    return {"report": (swept / "report.html", "Headline"),
            "history": (base / "history" / "history.html", "Findings"),
            "compare": (base / "compare" / "compare.html", "2 regression(s) flagged")}


@pytest.fixture(scope="module")
def browser():
    with Chromium(CHROMIUM, WIDTH, HEIGHT) as chromium:
        yield chromium


@pytest.mark.parametrize("name", ["report", "history", "compare"])
def test_the_page_reads_well_in_a_browser(pages, browser, tmp_path, name):
    path, headline = pages[name]
    page = browser.open(path.resolve().as_uri())
    shots = [page.screenshot(tmp_path / f"{name}-first-screen.png"),
             page.screenshot(tmp_path / f"{name}-full.png", full=True)]
    if os.environ.get("LSTM_BENCH_SCREENSHOTS"):
        keep = Path(os.environ["LSTM_BENCH_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, keep / shot.name)
    assert all(s.read_bytes().startswith(b"\x89PNG") for s in shots)
    found = problems(page, headline)
    assert not found, "\n".join(found)


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """A missing image, a script error, a wide table with no scroll box and a headline far down: all named."""
    cells = "".join(f"<td>column-{i}-with-a-long-unbreakable-value</td>" for i in range(30))
    (tmp_path / "broken.html").write_text(
        "<!doctype html><html><body><div style='height:2000px'></div><h2>Headline</h2><p>late</p>"
        f"<table><tr>{cells}</tr></table><img src='plots/missing.png'><script>console.error('boom')</script>"
        "</body></html>")
    found = "\n".join(problems(browser.open((tmp_path / "broken.html").as_uri()), "Headline"))
    assert "plots/missing.png did not load" in found
    assert "console: boom" in found and "missing.png" in found.split("image")[0]  # the failed load is logged too
    assert "without a scroll box of its own" in found and "px wide in a 1280-px window" in found
    assert "below the first screen" in found
