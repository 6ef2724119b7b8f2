"""The smoke preset (configs/smoke-nq-open-wiki2021.yaml) with the fake reader, pinned byte for byte.

Its indexes are built here exactly as the preset's header says (2021 extract, BM25, NQ-open counts), then the
preset runs with `reader.backend=fake`: records.jsonl and summary.csv must equal tests/data/pins/smoke-fake/,
which were made by the code before issue 15's pipeline, record and sharding refactors. A change that is meant to
alter them (a linker rule, a counting fix) regenerates the pins with RAG_UPDATE_PINS=1 and says why in its commit.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "tests" / "data" / "pins" / "smoke-fake"
from tests.unit.test_eval_pin import without_gold  # noqa: E402

FILES = ("records.jsonl", "summary.csv")


def _ok(args: list[str]) -> None:
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def wiki2021(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """The 2021 extract's passage store and BM25 index, built as the smoke preset's header says."""
    root = tmp_path_factory.mktemp("smoke")
    wiki, bm25 = root / "wiki2021", root / "wiki2021-bm25"
    _ok(["corpus", "build", str(shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz"), "--out", str(wiki)])
    _ok(["index", "build", "--passages", str(wiki), "--kind", "bm25", "--out", str(bm25)])
    return wiki, bm25


def test_smoke_preset_with_the_fake_reader_is_pinned(shared_data, wiki2021, tmp_path):
    (wiki, bm25), counts, nq = wiki2021, tmp_path / "counts", shared_data / "qa" / "nq-open.test.jsonl"
    _ok(["counts", "build", "--passages", str(wiki), "--qa", str(nq), "--out", str(counts)])
    run = tmp_path / "run"
    _ok(["eval", "run", "--config", str(ROOT / "configs" / "smoke-nq-open-wiki2021.yaml"), "--set", "reader.backend=fake",
         "--set", "reader.model=fake", "--set", f"counts={counts}", "--set", f"retrievers=[{{name: bm25, index: {bm25}}}]",
         "--set", f"qa.path={nq}", "--out", str(run), "--no-progress"])
    if os.environ.get("RAG_UPDATE_PINS"):
        for name in FILES:
            data = (run / name).read_bytes()
            (PINS / name).write_bytes(without_gold(data) if name == "records.jsonl" else data)
    for name in FILES:
        got = (run / name).read_bytes()
        got = without_gold(got) if name == "records.jsonl" else got  # pinned before issue 20's gold log-probability
        assert got == (PINS / name).read_bytes(), f"{name} differs from tests/data/pins/smoke-fake/{name}"


def readme_python_blocks(*needles: str) -> list[str]:
    """The README's ```python blocks that contain every one of `needles`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    return [b for b in blocks if all(n in b for n in needles)]


def test_readme_python_examples_for_the_pipeline_and_runs(wiki2021, tmp_path):
    """The README's pipeline and run-folder snippets, run as written on the 2021 extract (paths substituted)."""
    import subprocess
    import sys

    wiki, bm25 = wiki2021
    (pipeline,) = readme_python_blocks("from rag.pipeline import")
    (run_block,) = readme_python_blocks("load_run(")
    import json

    from rag.corpus.store import PassageStore
    from rag.counts import write_counts

    # one question BM25 finds (a passage's own words; the fake reader answers the top passage's title), one it cannot
    first = PassageStore(wiki).table.slice(0, 1).to_pylist()[0]
    questions = [("which article says " + " ".join(first["text"].split()[:12]), first["title"]),
                 ("what is the capital of norway", "Oslo")]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in questions))
    write_counts(tmp_path / "counts", [{"qid": f"qa-{i}", "question": q, "count": c}
                                       for i, ((q, _), c) in enumerate(zip(questions, (3, None)))], qa_path=qa)
    _ok(["eval", "run", "--config", str(ROOT / "configs" / "smoke-nq-open-wiki2021.yaml"), "--set", "reader.backend=fake",
         "--set", "reader.model=fake", "--set", f"counts={tmp_path / 'counts'}", "--set",
         f"retrievers=[{{name: bm25, index: {bm25}}}]", "--set", f"qa.path={qa}", "--out", str(tmp_path / "run"),
         "--no-progress"])
    for code, subs in ((pipeline, {"indexes/wiki2021-bm25": str(bm25)}), (run_block, {"runs/smoke-nq-open-wiki2021": str(tmp_path / "run")})):
        for a, b in subs.items():
            assert a in code
            code = code.replace(a, b)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.strip(), code
    assert "2 questions; 1 fixed by retrieval" in r.stdout  # the fake reader reads the top passage's title
