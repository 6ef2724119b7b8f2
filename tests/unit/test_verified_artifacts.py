"""Verified artifacts (issue 18, req. 3-5): hashes recorded at build time, `rag verify`, damaged files refused in one
line naming the file, and counts / indexes over different passage stores refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.artifacts import MANIFEST, file_sha256, sampled_hash
from rag.cli import main
from rag.counts import write_counts
from rag.errors import ArtifactError
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)

DOCS = [{"id": f"d{i}", "title": f"Title {i}", "text": " ".join(f"word{(i * 7 + j) % 50} topic{i % 5}" for j in range(60))}
        for i in range(40)]


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A passage store and a bm25, dense (hash encoder) and hybrid index over it, built through the CLI."""
    root = tmp_path_factory.mktemp("verified")
    with open(root / "docs.jsonl", "w") as f:
        for d in DOCS:
            f.write(json.dumps(d) + "\n")
    for args in (["corpus", "build", root / "docs.jsonl", "--out", root / "passages", "--words", 20, "--no-progress"],
                 ["index", "build", "--passages", root / "passages", "--kind", "bm25", "--out", root / "bm25"],
                 ["index", "build", "--passages", root / "passages", "--kind", "dense", "--encoder", "hash:16",
                  "--factory", "Flat", "--out", root / "dense"],
                 ["index", "build", "--passages", root / "passages", "--kind", "hybrid", "--members",
                  f"{root / 'bm25'},{root / 'dense'}", "--out", root / "hybrid"]):
        r = cli(*args)
        assert r.exit_code == 0, r.output
    return root


def copy(built: Path, tmp_path: Path, *names: str) -> Path:
    for n in names:
        shutil.copytree(built / n, tmp_path / n)
    return tmp_path


def test_manifests_record_the_sha256_and_sampled_hash_of_every_file(built):
    for name in ("passages", "bm25", "dense"):
        m = json.loads((built / name / MANIFEST).read_text())
        assert set(m["hashes"]) == set(m["files"])
        for f, h in m["hashes"].items():
            assert h == {"sha256": file_sha256(built / name / f), "sample": sampled_hash(built / name / f)}


def test_verify_says_ok_or_lists_each_mismatch(built, tmp_path):
    for name in ("passages", "bm25", "dense", "hybrid"):
        r = cli("verify", built / name)
        assert r.exit_code == 0 and r.output.startswith("OK "), r.output
    copy(built, tmp_path, "dense")
    npy = tmp_path / "dense" / "embeddings.npy"
    data = bytearray(npy.read_bytes())
    data[-5] ^= 1
    npy.write_bytes(bytes(data))
    (tmp_path / "dense" / "index.faiss").unlink()
    r = cli("verify", tmp_path / "dense")
    assert r.exit_code == 2, r.output
    assert "MISMATCH " in r.output and "embeddings.npy: sha256 differs" in r.output and "index.faiss: missing" in r.output
    r = cli("verify", tmp_path / "nothing")
    assert r.exit_code == 2 and "no such folder" in r.output and "MISMATCH" not in r.output


def test_verify_of_an_artifact_without_hashes_checks_sizes_only(built, tmp_path):
    copy(built, tmp_path, "bm25")
    m = json.loads((tmp_path / "bm25" / MANIFEST).read_text())
    del m["hashes"]
    (tmp_path / "bm25" / MANIFEST).write_text(json.dumps(m))
    r = cli("verify", tmp_path / "bm25")
    assert r.exit_code == 0 and "no hashes recorded (built before" in r.output and "sizes only" in r.output
    r = cli("search", "word3", "--index", tmp_path / "bm25", "--passages", built / "passages")
    assert r.exit_code == 0, r.output  # old artifacts still load


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "zero":  # a zeroed middle block, same size
        mid = len(data) // 2
        data[max(0, mid - 512) : mid + 512] = bytes(len(data[max(0, mid - 512) : mid + 512]))
    elif how == "garbage":
        data = bytearray(b"\x00garbage{" * (len(data) // 9 + 1))[: len(data)]
    path.write_bytes(bytes(data))


CASES = [  # (artifact, file, command that loads it)
    ("passages", "passages.parquet", ["search", "word3", "--index", "{root}/bm25", "--passages", "{root}/passages"]),
    ("bm25", "vocab.index.json", ["search", "word3", "--index", "{root}/bm25", "--passages", "{root}/passages"]),
    ("bm25", "data.csc.index.npy", ["search", "word3", "--index", "{root}/bm25", "--passages", "{root}/passages"]),
    ("dense", "embeddings.npy", ["index", "build", "--passages", "{root}/passages", "--kind", "dense",
                                 "--embeddings-from", "{root}/dense", "--factory", "HNSW8", "--out", "{root}/dense2"]),
    ("dense", "index.faiss", ["search", "word3", "--index", "{root}/dense", "--passages", "{root}/passages"]),
]


@pytest.mark.parametrize("hashed", [True, False], ids=["hashed", "old-manifest"])
@pytest.mark.parametrize("artifact,name,command", CASES, ids=[c[1] for c in CASES])
def test_a_damaged_file_is_one_line_naming_it_exit_2(built, tmp_path, artifact, name, command, hashed):
    root = copy(built, tmp_path, "passages", "bm25", "dense")
    if not hashed:  # as built before hashed manifests: the library's own error is turned into the message
        for a in ("passages", "bm25", "dense"):
            m = json.loads((root / a / MANIFEST).read_text())
            del m["hashes"]
            (root / a / MANIFEST).write_text(json.dumps(m))
    damage(root / artifact / name, "garbage")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    r = cli(*[c.format(root=root) for c in command])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2, r.output
    assert lines[-1].startswith("error: ") and "Traceback" not in r.output, r.output
    assert f"{artifact}/{name}" in lines[-1] or (not hashed and f"{artifact}" in lines[-1]), lines[-1]
    assert "rebuild" in lines[-1], lines[-1]
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no temporary file or lock left
    r = CliRunner().invoke(main, ["-v", *[c.format(root=root) for c in command]])
    assert r.exit_code == 2 and "Traceback" in r.output


def test_a_manifest_whose_kind_was_edited_is_refused(built, tmp_path):
    root = copy(built, tmp_path, "passages", "bm25")
    m = json.loads((root / "bm25" / MANIFEST).read_text())
    (root / "bm25" / MANIFEST).write_text(json.dumps({**m, "kind": "counts"}))
    r = cli("search", "word3", "--index", root / "bm25", "--passages", root / "passages")
    assert r.exit_code == 2 and "bm25/manifest.json: is a 'counts' artifact, expected 'index/'" in r.output, r.output
    assert "rebuild with: rag index build" in r.output and len(r.output.strip().splitlines()) == 1
    m = json.loads((root / "passages" / MANIFEST).read_text())
    (root / "passages" / MANIFEST).write_text(json.dumps({**m, "kind": "index/bm25"}))
    r = cli("search", "word3", "--index", built / "bm25", "--passages", root / "passages")
    assert r.exit_code == 2 and "expected 'passages'" in r.output and "rag corpus build" in r.output, r.output


def test_a_damaged_counts_table_is_refused_by_eval_run(world, tmp_path):  # noqa: F811
    shutil.copytree(world / "counts", tmp_path / "counts")
    damage(tmp_path / "counts" / "counts.parquet", "zero")
    cfg = write_config(world, tmp_path / "run", counts=str(tmp_path / "counts"))
    r = cli("eval", "run", "--config", cfg, "--no-progress")
    assert r.exit_code == 2 and "counts/counts.parquet: content differs" in r.output and "rag counts build" in r.output
    assert not (tmp_path / "run").exists()


def test_counts_and_index_over_different_stores_are_refused_unless_allowed(world, tmp_path):  # noqa: F811
    from rag.counts import load_counts

    rows, _ = load_counts(world / "counts")
    other = {"path": "elsewhere/passages", "fingerprint": "0" * 32, "n_passages": 3}
    write_counts(tmp_path / "counts", [{"qid": r.qid, "question": r.question, "count": r.count} for r in rows],
                 qa_path=world / "qa.jsonl", passages=other)
    cfg = write_config(world, tmp_path / "run", counts=str(tmp_path / "counts"))
    with pytest.raises(ArtifactError, match=r"counts .* over passages elsewhere/passages .* but index .*bm25 .*"
                                            r"over .*passages.*--allow-store-mismatch"):
        run_eval(load_config(cfg), progress=False, reader=CountingReader())
    r = cli("eval", "run", "--config", cfg, "--no-progress", "--backend", "fake", "--allow-store-mismatch")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert len(m["store_mismatches"]) == 1 and "elsewhere/passages" in m["store_mismatches"][0]
    assert "passage stores differ" in (tmp_path / "run" / "summary.md").read_text()
    assert set(m["files"]) == {"config.yaml", "selection.json", "records.jsonl"}
    r = cli("verify", tmp_path / "run")
    assert r.exit_code == 0 and r.output.startswith("OK"), r.output


def test_a_run_killed_before_its_manifest_or_while_writing_a_file_resumes(world, tmp_path):  # noqa: F811
    """Found by eval/bench_reliability.py: kill -9 between config.yaml and manifest.json, or during a write."""
    cfg = load_config(write_config(world, tmp_path / "run"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: tiny\n")
    (tmp_path / "run" / ".manifest.json.tmp-99999").write_text("{")
    res = run_eval(cfg, progress=False, reader=CountingReader())
    assert sum(res.computed.values()) == 24
    m = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert m["status"] == "complete" and m["reader_info"]
    (tmp_path / "run" / ".trends.json.tmp-99999").write_text("{")
    run_eval(cfg, progress=False, reader=CountingReader())
    assert not list((tmp_path / "run").glob(".*tmp*"))
