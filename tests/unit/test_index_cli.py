"""`rag index build` / `rag index info` through click's CliRunner."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rag.artifacts import MANIFEST, atomic_dir
from rag.cli import main
from rag.corpus.store import PassageWriter
from rag.types import Passage

TEXTS = ["river castle", "castle dragon", "dragon ocean", "ocean whale", "whale river", "tiger lion"]


@pytest.fixture(scope="module")
def passages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "passages"
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(pid=f"p{i}", doc_id=f"d{i}", title=f"T{i}", text=t) for i, t in enumerate(TEXTS))
        w.close()
    return folder


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_build_then_info(passages, tmp_path):
    out = tmp_path / "bm25"
    r = run("index", "build", "--passages", passages, "--kind", "bm25", "--out", out, "--k1", 1.2, "--variant", "okapi", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "built bm25 index" in r.output and "6 passages" in r.output
    m = json.loads((out / MANIFEST).read_text())
    assert m["parameters"]["k1"] == 1.2 and m["parameters"]["variant"] == "okapi" and m["parameters"]["b"] == 0.4
    r = run("index", "info", out)
    assert r.exit_code == 0, r.output
    assert '"kind": "index/bm25"' in r.output and "present with the recorded sizes" in r.output and "fingerprint matches" in r.output


def test_build_rank_bm25_engine_and_hybrid(passages, tmp_path):
    assert run("index", "build", "--passages", passages, "--kind", "bm25", "--out", tmp_path / "a", "--no-progress").exit_code == 0
    r = run("index", "build", "--passages", passages, "--kind", "bm25", "--out", tmp_path / "b", "--engine", "rank-bm25",
            "--variant", "okapi", "--no-progress")
    assert r.exit_code == 0, r.output
    r = run("index", "build", "--passages", passages, "--kind", "hybrid", "--out", tmp_path / "h",
            "--members", f"{tmp_path / 'a'},{tmp_path / 'b'}", "--rrf-k", 10, "--weights", "1,2")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "h" / MANIFEST).read_text())
    assert m["parameters"] == {"rrf_k": 10.0, "weights": [1.0, 2.0], "fusion_depth": 100}


@pytest.mark.parametrize("kind,extra,flag", [
    ("bm25", ["--encoder", "x"], "--encoder"),
    ("bm25", ["--members", "a,b"], "--members"),
    ("bm25", ["--factory", "Flat", "--device", "cpu"], "--factory, --device"),
    ("hybrid", ["--k1", "1.0", "--members", "a,b"], "--k1"),
])
def test_options_that_do_not_apply_are_errors(passages, tmp_path, kind, extra, flag):
    r = run("index", "build", "--passages", passages, "--kind", kind, "--out", tmp_path / "x", *extra)
    assert r.exit_code == 2
    assert f"error: {flag} does not apply to --kind {kind}" in r.output
    assert not (tmp_path / "x").exists()


def test_unknown_kind_engine_variant_list_the_choices(passages, tmp_path):
    r = run("index", "build", "--passages", passages, "--kind", "splade", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "'bm25'" in r.output and "'hybrid'" in r.output
    r = run("index", "build", "--passages", passages, "--kind", "bm25", "--out", tmp_path / "x", "--engine", "lucene")
    assert r.exit_code == 2 and "'bm25s'" in r.output and "'rank-bm25'" in r.output
    r = run("index", "build", "--passages", passages, "--kind", "bm25", "--out", tmp_path / "x", "--engine", "rank-bm25")
    assert r.exit_code == 2 and "implements only the okapi variant" in r.output


def test_existing_output_and_missing_passages(passages, tmp_path):
    out = tmp_path / "i"
    assert run("index", "build", "--passages", passages, "--kind", "bm25", "--out", out, "--no-progress").exit_code == 0
    r = run("index", "build", "--passages", passages, "--kind", "bm25", "--out", out, "--no-progress")
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert run("index", "build", "--passages", passages, "--kind", "bm25", "--out", out, "--overwrite", "--no-progress").exit_code == 0
    r = run("index", "build", "--passages", tmp_path / "nope", "--kind", "bm25", "--out", tmp_path / "j")
    assert r.exit_code == 2 and "no such folder" in r.output


def test_info_refuses_truncated_and_unfinished_indexes(passages, tmp_path):
    out = tmp_path / "i"
    run("index", "build", "--passages", passages, "--kind", "bm25", "--out", out, "--no-progress")
    f = out / "indices.csc.index.npy"
    f.write_bytes(f.read_bytes()[:-4])
    r = run("index", "info", out)
    assert r.exit_code == 2 and "indices.csc.index.npy" in r.output and "truncated" in r.output
    (out / MANIFEST).unlink()
    r = run("index", "info", out)
    assert r.exit_code == 2 and "interrupted build" in r.output


def test_help_names_the_kinds_of_every_option():
    r = run("index", "build", "--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split("Options:", 1)[1].split())
    for flag, kind in [("--engine", "bm25"), ("--k1", "bm25"), ("--b", "bm25"), ("--variant", "bm25"), ("--encoder", "dense"),
                       ("--factory", "dense"), ("--batch-size", "dense"), ("--device", "dense"), ("--train-sample", "dense"),
                       ("--chunk-size", "dense"), ("--ef-construction", "dense"),
                       ("--max-seq-length", "dense"), ("--precision", "dense"), ("--compile / --no-compile", "dense"), ("--seed", "dense"), ("--embeddings-from", "dense"), ("--members", "hybrid"), ("--rrf-k", "hybrid"), ("--weights", "hybrid"),
                       ("--fusion-depth", "hybrid")]:
        assert f"{flag} " in text and f"[{kind}]" in text.split(f"{flag} ", 1)[1][:80], flag


def test_dense_options_reach_the_dense_builder(passages, tmp_path):
    pytest.importorskip("faiss")
    out = tmp_path / "dense"
    r = run("index", "build", "--passages", passages, "--kind", "dense", "--out", out, "--encoder", "hash:32",
            "--factory", "Flat", "--batch-size", 4, "--chunk-size", 4, "--no-progress")
    assert r.exit_code == 0, r.output
    m = json.loads((out / MANIFEST).read_text())
    assert m["kind"] == "index/dense" and "hash" in json.dumps(m)
    r = run("index", "build", "--passages", passages, "--kind", "dense", "--out", tmp_path / "x", "--variant", "okapi")
    assert r.exit_code == 2 and "--variant does not apply to --kind dense" in r.output
    r = run("search", "castle", "--index", out, "--ef-search", 10)
    assert r.exit_code == 2 and "--ef-search" in r.output
