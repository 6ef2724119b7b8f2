"""rag.progress: a tqdm bar on a terminal, started / done / interrupted log lines elsewhere."""
from __future__ import annotations

import io
import logging

import pytest

from rag import progress
from rag.progress import LineBar, bar, stage


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="rag.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "rag.progress"]


def test_a_stage_logs_started_and_done_with_counts_rate_and_postfix(lines):
    with LineBar("encode", total=1000, unit="passage") as b:
        for _ in range(4):
            b.update(250)
        b.set_postfix({"documents": 12_345}, shards=3)
    got = lines()
    assert got[0] == "encode: started (1,000 passages)"
    assert got[1].startswith("encode: done, 1,000 passages in ") and "passages/s)" in got[1]
    assert got[1].endswith("; documents 12,345, shards 3")


def test_an_interrupted_stage_says_how_far_it_got(lines):
    with pytest.raises(KeyboardInterrupt):
        with LineBar("encode", total=1000, unit="passage") as b:
            b.update(300)
            raise KeyboardInterrupt
    assert lines()[-1].startswith("encode: interrupted after 300 of 1,000 passages (")
    with pytest.raises(ValueError):
        with stage("train IVF"):
            raise ValueError("boom")
    assert lines()[-1].startswith("train IVF: interrupted by ValueError (")


def test_a_long_stage_logs_its_rate_and_eta_between_start_and_end(lines):
    b = LineBar("link", total=100, unit="passage", log_every=0)
    b.update(25)
    assert lines()[-1].startswith("link: 25 of 100 passages (25%), ") and ", ETA " in lines()[-1]
    b.close()
    b.close()  # closing twice logs once
    assert sum("done" in x for x in lines()) == 1


def test_bytes_resume_and_stage_lines(lines):
    with LineBar("reading", total=3 * 2**20, unit="B", unit_scale=True, initial=2**20) as b:
        b.update(2**20)
    assert lines()[0] == "reading: started (3.00MB, 1.00MB done before)"
    assert lines()[1].startswith("reading: done, 1.00MB in ")
    with stage("counting", "12 questions") as info:
        info["linked"] = 10
    assert lines()[2] == "counting: started (12 questions)"
    assert lines()[3].startswith("counting: done in ") and lines()[3].endswith("; linked 10")


def test_a_bar_is_drawn_only_on_a_terminal_and_when_enabled(monkeypatch, lines):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    with bar("encode", total=10, unit="passage", ncols=80) as b:
        b.update(10)
    assert "encode: 100%" in err.getvalue() and "passage/s]" in err.getvalue() and not lines()
    assert isinstance(bar("x", enabled=False), LineBar) and progress.draw_bars() and not progress.draw_bars(False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal (a pipe, a file, CI)
    assert isinstance(bar("x", total=1), LineBar) and not progress.draw_bars()
    assert lines() == ["x: started", "x: started (1 it)"]
