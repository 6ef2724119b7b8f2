"""A run read for analysis: open_run's DataFrames (columns, dtypes, values against the CSV files), open_counts, and
report.html (self-contained, its data, a missing passage store) on the tiny world of test_eval_run."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def run_dir(world, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("analysis") / "run"
    run_eval(load_config(write_config(world, out)), progress=False, reader=CountingReader())
    return out


def dtypes(df) -> dict[str, str]:
    return {c: str(t) for c, t in df.dtypes.items()}


def test_records_columns_dtypes_and_values(run_dir):
    from rag.evaluation import open_run
    from rag.evaluation.dataframes import RECORD_DTYPES

    run = open_run(run_dir)
    df = run.records()
    assert dtypes(df) == RECORD_DTYPES  # every documented column, in order, with its dtype
    assert len(df) == 24 and list(df["mode"].unique()) == ["closed", "rag:bm25"]
    assert list(df["bucket"].cat.categories) == ["0", "1-9", "10-99", "100-999", ">=1000", "unlinked"]
    assert df["bucket"].cat.ordered and list(df["outcome"].cat.categories) == [
        "right-both", "fixed", "misled", "reader-missed", "retrieval-missed", "no-evidence"]
    oslo = df[(df.qid == "qa-0") & (df["mode"] == "rag:bm25")].iloc[0]
    assert oslo.prediction == "Oslo" and oslo.answers == ("Oslo",) and oslo["count"] == 2500 and oslo.bucket == ">=1000"
    assert oslo.retriever == "bm25" and oslo.first_hit == 1 and oslo.n_shown == 2 and oslo.evidence_shown
    assert oslo.outcome == "fixed" and oslo.pids == ("Oslo#0", oslo.retrieved[1]) and bool(oslo.right)
    closed = df[df["mode"] == "closed"]
    assert closed.retriever.isna().all() and closed.outcome.isna().all() and closed.first_hit.isna().all()
    assert closed.pids.map(lambda x: x is None).all()
    # the fake reader scores every gold answer: log 0.9 per word it would have said, log 0.05 per other word
    import math
    assert not df.gold_logprob.isna().any()
    right = df[df.right.astype(bool)]
    assert (right.gold_logprob.round(6) >= round(math.log(0.9) * 3, 6)).all()
    assert df[df.qid == "qa-10"]["count"].isna().all() and (df[df.qid == "qa-10"].bucket == "unlinked").all()
    # the typed records are there too
    assert run.run.records[("qa-0", "closed")].prediction == "Bergen" and len(list(run)) == 24
    assert run.modes == ["closed", "rag:bm25"] and run.retrievers == ["bm25"]


def test_summary_recall_attribution_match_the_csv_files(run_dir):
    from rag.evaluation import open_run
    from rag.evaluation.dataframes import ADAPTIVE_DTYPES, ATTRIBUTION_DTYPES, RECALL_DTYPES, SUMMARY_DTYPES

    run = open_run(run_dir)
    s = run.summary()
    assert dtypes(s) == SUMMARY_DTYPES
    rows = list(csv.DictReader(open(run_dir / "summary.csv")))
    assert len(s) == len(rows)
    for got, want in zip(s.itertuples(), rows):
        assert (got.bucket, got.system, got.measure, got.n) == (want["bucket"], want["system"], want["measure"], int(want["n"]))
        assert f"{got.mean:.6f}" == want["mean"] or (want["mean"] == "" and got.mean != got.mean)
    assert list(s.bucket.cat.categories)[-2:] == ["linked", "all"]
    r = run.recall()
    assert dtypes(r) == RECALL_DTYPES and set(r.k) == {1, 5} and set(r.retriever) == {"bm25"}
    a = run.attribution()
    assert dtypes(a) == ATTRIBUTION_DTYPES
    attr = list(csv.DictReader(open(run_dir / "attribution.csv")))
    assert len(a) == len(attr) == 6 * 8
    assert [(x.bucket, x.outcome, x.questions) for x in a.itertuples()] == [(x["bucket"], x["outcome"], int(x["questions"])) for x in attr]
    shares = a[a.bucket == "all"].set_index("outcome")["mean"]
    assert shares.sum() == pytest.approx(1.0) and shares["fixed"] == pytest.approx(9 / 12)
    ad = run.adaptive()
    assert dtypes(ad) == ADAPTIVE_DTYPES and list(ad.policy) == ["adaptive", "always", "never", "adaptive-always", "adaptive-never"]
    assert ad.attrs["metric"] == "em" and "description" in ad.attrs
    # other edges re-bucket every table
    other = open_run(run_dir, edges=[0, 100])
    assert list(other.records().bucket.cat.categories) == ["0-99", ">=100", "unlinked"]
    assert set(other.attribution().bucket) == {"0-99", ">=100", "unlinked", "linked", "all"}


def test_open_counts(world):  # noqa: F811
    from rag.entities import open_counts
    from rag.entities.dataframes import COUNT_DTYPES, SUMMARY_DTYPES

    c = open_counts(world / "counts")
    df = c.records()
    assert dtypes(df) == COUNT_DTYPES and len(df) == len(c) == 12
    assert df.loc[0, "count"] == 2500 and df.loc[0, "bucket"] == ">=1000" and df.loc[0, "method"] == "external"
    assert df["count"].isna().sum() == 2 and (df[df["count"].isna()].bucket == "unlinked").all()
    s = c.summary()
    assert dtypes(s) == SUMMARY_DTYPES and s.questions.sum() == 12 and s.share.sum() == pytest.approx(1.0)
    assert list(s.bucket) == ["0", "1-9", "10-99", "100-999", ">=1000", "unlinked"]


def blocks(page: str) -> tuple[dict, dict]:
    data = re.search(r'<script type="application/json" id="rag-data">(.*?)</script>', page, re.S).group(1)
    texts = re.search(r'<script type="application/json" id="rag-passages">(.*?)</script>', page, re.S).group(1)
    return json.loads(data), json.loads(texts)


def test_html_is_self_contained_and_holds_the_data(run_dir, tmp_path):
    r = CliRunner().invoke(main, ["eval", "report", str(run_dir), "--html"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = (run_dir / "report.html").read_text()
    # nothing is fetched at view time: no external URL in any src / href / url(), no <link>, no remote script
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page, re.I) and "<link" not in page
    # accuracy, recall, attribution, and EM beside the gold log-probability
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) == 4
    assert "Failure attribution" in page and "Adaptive retrieval" in page and "<table class=\"summary\">" in page
    assert '<a href="#failure-attribution-em">' in page and 'id="failure-attribution-em"' in page
    data, texts = blocks(page)
    assert data["modes"] == ["closed", "rag:bm25"] and len(data["q"]) == 12 and data["stores"] == [None]
    assert data["q"][0] == ["qa-0", "what is the capital of norway", ["Oslo"], 2500, 4]
    closed, bm25 = data["r"][0][0], data["r"][1][0]
    assert closed[:4] == ["Bergen", 0, 0, 0] and closed[7] == []
    assert bm25[0] == "Oslo" and bm25[4] == 1 and bm25[5] == 1 and bm25[6] == 2  # outcome "fixed", hit at 1, 2 shown
    first = bm25[7][0]
    assert texts["title"][first] == "Oslo" and "capital and most populous city of Norway" in texts["text"][first]


def test_html_says_when_the_passage_store_is_missing(run_dir, tmp_path):
    from rag.evaluation.report_html import write_html

    manifest = json.loads((run_dir / "manifest.json").read_text())
    moved = shutil.copytree(run_dir, tmp_path / "moved")
    info = manifest["indexes"]["bm25"]["passages"]
    manifest["indexes"]["bm25"]["passages"] = {"path": str(tmp_path / "gone"), "fingerprint": info["fingerprint"]}
    (moved / "manifest.json").write_text(json.dumps(manifest))
    page = write_html(moved).read_text()
    data, texts = blocks(page)
    assert "not found" in data["stores"][0] and "gone" in data["stores"][0]
    assert '<p class="missing">bm25: passage store' in page
    assert all(t is None for t in texts["text"])  # no texts; the passage ids stand in for the titles
    assert texts["title"][data["r"][1][0][7][0]] == "Oslo#0"


def test_html_escapes_text_that_could_close_the_script(run_dir, tmp_path):
    from rag.evaluation.records import EvalRecord, RecordStore
    from rag.evaluation.report_html import write_html

    moved = shutil.copytree(run_dir, tmp_path / "evil")
    store = RecordStore(moved / "records.jsonl")
    recs = store.load()
    (moved / "records.jsonl").unlink()
    evil = "</script><script>alert(1)</script><!--"
    store.append([EvalRecord(**{**r.__dict__, "prediction": evil}) if r.key == ("qa-0", "closed") else r for r in recs.values()])
    page = write_html(moved).read_text()
    assert evil not in page and page.count("</script>") == 3  # the two data blocks and the code
    data, _ = blocks(page)
    assert data["r"][0][0][0] == evil


def test_markdown_subset():
    from rag.evaluation.report_html import markdown_html

    got = markdown_html("# T `x`\n\n- **a** b\n- c\n\n| h | i |\n|---|---|\n| 1 | 2 |\n\npara\nline\n\n![p](plots/none.png)\n", Path("."))
    assert '<h2 id="t-x">T <code>x</code></h2>' in got and "<li><strong>a</strong> b</li><li>c</li>" in got
    assert "<th>h</th><th>i</th>" in got and "<td>1</td><td>2</td>" in got and "---" not in got
    assert "<p>para line</p>" in got and "plot plots/none.png not found" in got


def test_readme_pandas_example_runs_as_written(run_dir, capsys):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "open_run(" in b]
    assert "runs/nq-open" in code and len(code.strip().splitlines()) <= 7  # an import, a blank line, five lines
    exec(compile(code.replace("runs/nq-open", str(run_dir)), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "rag:bm25" in out and ">=1000" in out and "fixed" in out
