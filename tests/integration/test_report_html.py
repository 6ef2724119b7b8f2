"""report.html in a real browser: headless Chromium (Debian's `chromium`, installed by .ci/run) loads the page of the
tiny world's run from a file, with no network, and the DOM shows that each filter changes the visible rows and
that a row expands to every mode's answer and the passages shown, gold answers highlighted.

Skipped when no chromium is installed (set $CHROMIUM to another Chromium-based browser); in CI (the CI variable
set) a missing browser fails instead.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from tests.browser import Chromium, find_chromium
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with Chromium(width=1280, height=900) as b:
        yield b


@pytest.fixture(scope="module")
def page(world, tmp_path_factory) -> Path:  # noqa: F811
    from rag.evaluation.report import render

    out = tmp_path_factory.mktemp("html") / "run"
    run_eval(load_config(write_config(world, out)), progress=False, reader=CountingReader(), report=False)
    render(out, html=True)
    return out / "report.html"


def visible(b) -> list[list[str]]:
    """The explorer's rows as drawn: [id, bucket, count, mode, question, prediction, EM, F1, contains, outcome]."""
    return b.eval("[...document.querySelectorAll('#rows tr.row')].map(tr => [...tr.cells].map(td => td.textContent))")


def choose(b, select_id: str, label: str) -> None:
    """Pick the option shown as `label` in a filter, as a user would (a change event)."""
    b.eval(f"""(() => {{ const s = document.getElementById({select_id!r});
        const o = [...s.options].find(o => o.textContent === {label!r});
        if (!o) throw new Error('no option ' + {label!r});
        s.value = o.value; s.dispatchEvent(new Event('change')); return 0; }})()""")


def count(b) -> str:
    return b.eval("document.getElementById('count').textContent")


def test_filters_change_the_visible_rows_and_rows_expand(browser, page):
    b = browser
    b.open(page)
    assert float(b.eval("document.body.dataset.firstRenderMs")) > 0
    rows = visible(b)
    assert len(rows) == 24 and count(b) == "24 of 24 rows"
    assert b.eval("document.querySelectorAll('img[src^=\"data:image/png;base64,\"]').length") == 4  # accuracy, recall, attribution, gold log-probability
    assert "Failure attribution" in b.eval("document.getElementById('summary').innerText")

    choose(b, "f-bucket", ">=1000")
    rows = visible(b)
    assert len(rows) == 4 and {r[1] for r in rows} == {">=1000"} and {r[0] for r in rows} == {"qa-0", "qa-1"}

    choose(b, "f-mode", "rag:bm25")
    rows = visible(b)
    assert [(r[0], r[3]) for r in rows] == [("qa-0", "rag:bm25"), ("qa-1", "rag:bm25")]

    choose(b, "f-bucket", "all")
    choose(b, "f-outcome", "right both ways")
    rows = visible(b)  # the three questions the fake reader knows closed-book and answers with passages
    assert {r[0] for r in rows} == {"qa-1", "qa-2", "qa-3"} and {r[9] for r in rows} == {"right both ways"}

    choose(b, "f-outcome", "any")
    choose(b, "f-mode", "all")
    b.eval("(() => { const e = document.getElementById('f-text'); e.value = 'NORWAY'; e.dispatchEvent(new Event('input')); return 0; })()")
    end = time.monotonic() + 5
    while count(b) != "2 of 24 rows" and time.monotonic() < end:  # applied 150 ms after the last keystroke
        time.sleep(0.05)
    rows = visible(b)
    assert count(b) == "2 of 24 rows" and [(r[0], r[3], r[5]) for r in rows] == [("qa-0", "closed", "Bergen"), ("qa-0", "rag:bm25", "Oslo")]

    assert b.eval("document.querySelectorAll('tr.detail').length") == 0
    b.eval("document.querySelectorAll('#rows tr.row')[0].click()")
    detail = b.eval("document.querySelector('tr.detail').innerText")
    assert "what is the capital of norway" in detail and "Gold answers" in detail
    assert "Bergen" in detail and "Oslo" in detail and "fixed by retrieval" in detail  # every mode's prediction
    assert "Passages shown with rag:bm25 (2)" in detail and "most populous city of Norway" in detail
    marks = b.eval("[...document.querySelectorAll('tr.detail ol.passages mark')].map(m => m.textContent)")
    assert marks and set(marks) == {"Oslo"}  # the gold answer highlighted in the passage text
    assert b.eval("document.querySelector('tr.detail ol.passages li').className") == "hit"  # first answer-bearing
    b.eval("document.querySelectorAll('#rows tr.row')[0].click()")  # a second click folds it again
    assert b.eval("document.querySelectorAll('tr.detail').length") == 0


def test_pagination_over_many_rows(browser, tmp_path):
    """A run larger than one page: 60 questions x 3 modes = 180 rows, 50 drawn at a time."""
    from rag.evaluation.report import render
    from tests.synthetic_run import synthetic_run

    folder = synthetic_run(tmp_path, n_questions=60)
    render(folder, html=True, plots=False)
    b = browser
    b.open(folder / "report.html")
    assert count(b) == "180 of 180 rows" and len(visible(b)) == 50
    assert b.eval("document.getElementById('page').textContent") == "page 1 of 4"
    b.eval("document.getElementById('next').click()")
    assert b.eval("document.getElementById('page').textContent") == "page 2 of 4" and len(visible(b)) == 50
    choose(b, "f-mode", "closed")
    assert count(b) == "60 of 180 rows" and b.eval("document.getElementById('page').textContent") == "page 1 of 2"
