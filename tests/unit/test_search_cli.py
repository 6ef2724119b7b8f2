"""`rag search` through click's CliRunner."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rag.artifacts import atomic_dir
from rag.cli import main
from rag.corpus.store import PassageStore, PassageWriter
from rag.retrievers.bm25 import BM25Retriever
from rag.types import Passage


def make_store(folder, texts):
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(pid=f"d{i}#0", doc_id=f"d{i}", title=f"Title {i}", text=t) for i, t in enumerate(texts))
        w.close()
    return PassageStore(folder)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    store = make_store(root / "p", ["blue whales sing " * 30, "tigers hunt at night", "whales and dolphins"])
    return BM25Retriever.build(store, root / "i", progress=False)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_text_output(index):
    r = run("search", "whale songs", "--index", index, "-k", 5)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == 4  # two hits, each a header and a snippet line
    assert lines[0].split()[:1] == ["1"] and "Title 0" in lines[0] and "[d0#0]" in lines[0]
    assert lines[1].strip().startswith("blue whales sing") and lines[1].endswith("…") and len(lines[1].strip()) <= 200
    assert "Title 2" in lines[2]


def test_json_output(index):
    r = run("search", "whales", "--index", index, "--json", "-k", 1)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 1 and set(rows[0]) == {"pid", "rank", "score", "title", "text"}
    assert rows[0]["rank"] == 1 and rows[0]["pid"] in ("d0#0", "d2#0") and rows[0]["score"] > 0
    assert json.loads(run("search", "unicorns", "--index", index, "--json").output) == []


def test_errors_exit_2_with_a_message(index, tmp_path):
    cases = [
        (["search", "whales", "--index", index, "--ef-search", 64], "--ef-search does not apply"),
        (["search", "whales", "--index", index, "--nprobe", 4], "--nprobe does not apply"),
        (["search", "whales", "--index", index, "--k-factor", 4], "--k-factor does not apply"),
        (["search", "whales", "--index", index, "-k", 0], "k must be a positive integer"),
        (["search", "  ", "--index", index], "query 0 is empty"),
        (["search", "whales", "--index", tmp_path / "missing"], "no such folder"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output


def test_passages_from_another_store_are_refused(index, tmp_path):
    other = make_store(tmp_path / "other", ["something else"])
    r = run("search", "whales", "--index", index, "--passages", other.folder)
    assert r.exit_code == 2 and "fingerprint" in r.output and "rebuild the index" in r.output
