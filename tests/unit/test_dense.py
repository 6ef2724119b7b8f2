"""Dense index with the hash encoder: exact Flat search, ANN recall, resumable builds, refusals on load."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from rag.artifacts import MANIFEST, atomic_dir, partial_dir
from rag.corpus.store import PassageStore, PassageWriter, passage_text
from rag.encoders import HashEncoder
from rag.errors import ArtifactError, BadInputError
from rag.retrievers import INDEXES, load_index
from rag.retrievers.dense import EMBEDDINGS, INDEX_FILE, DenseRetriever
from rag.retrievers.dense_build import ENCODE_DIR
from rag.types import Passage

DIM = 64
WORDS = (
    "river mountain castle dragon knight forest ocean island planet comet violin piano guitar opera "
    "election senate treaty empire harbor railway bridge tunnel glacier volcano desert canyon meadow "
    "orchard falcon eagle salmon whale tiger zebra lion bamboo cactus tulip engine rocket poet novel "
    "bishop temple market cotton silver copper winter summer festival museum"
).split()


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 30)))) for _ in range(n)]


def make_store(folder: Path, texts: list[str]) -> PassageStore:
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(pid=f"d{i}#0", doc_id=f"d{i}", title=f"Doc {i}", text=x) for i, x in enumerate(texts))
        w.close()
    return PassageStore(folder)


class CountingEncoder(HashEncoder):
    """Hash encoder that records what it encoded and can fail after `fail_after` calls."""

    def __init__(self, dim: int = DIM, fail_after: int | None = None):
        super().__init__(dim)
        self.calls: list[list[str]] = []
        self.fail_after = fail_after

    def encode_batch(self, texts):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash while encoding")
        self.calls.append(list(texts))
        return super().encode_batch(texts)


@pytest.fixture(scope="module", autouse=True)
def faiss_one_thread():
    """FAISS's OpenMP threads spin-wait; on a shared 2-core machine small builds then take 10-100x longer."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> PassageStore:
    return make_store(tmp_path_factory.mktemp("store") / "passages", synthetic_texts(600))


@pytest.fixture(scope="module")
def queries() -> list[str]:
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(40)]


@pytest.fixture(scope="module")
def built(store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dense")
    flat = DenseRetriever.build(store, root / "flat", encoder=f"hash:{DIM}", factory="Flat", chunk_size=128, progress=False)
    out = {"Flat": flat}
    for factory in ("HNSW32", "IVF16,Flat", "IVF16,PQ16", "IVF16,PQ8,RFlat"):
        out[factory] = DenseRetriever.build(
            store, root / factory.replace(",", "_"), factory=factory, embeddings_from=flat, progress=False
        )
    return out


def brute_force(store: PassageStore, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    enc = HashEncoder(DIM)
    texts = [passage_text(p.title, p.text) for p in store.get_rows(range(len(store)))]
    scores = enc.encode_batch(queries) @ enc.encode_batch(texts).T  # (nq, n)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return scores, np.take_along_axis(scores, top, axis=1)


def test_registered_and_embeddings_are_the_encoder_output(store, built):
    assert INDEXES.get("dense") is DenseRetriever
    r = load_index(built["Flat"])
    assert isinstance(r, DenseRetriever) and r.SEARCH_OPTIONS == ()
    texts = [passage_text(p.title, p.text) for p in store.get_rows(range(len(store)))]
    np.testing.assert_array_equal(r.embeddings(), HashEncoder(DIM).encode_batch(texts))
    m = r.manifest
    assert m["kind"] == "index/dense" and m["metric"] == "inner_product" and m["factory"] == "Flat"
    assert m["encoder"]["backend"] == "hash" and m["encoder"]["dim"] == DIM and m["encoder"]["normalize"] is True
    assert m["passages"]["fingerprint"] == store.fingerprint and m["n_vectors"] == len(store)
    assert m["embeddings"]["bytes"] == (built["Flat"] / EMBEDDINGS).stat().st_size
    assert sorted(p.name for p in built["Flat"].iterdir()) == [EMBEDDINGS, INDEX_FILE, MANIFEST, "settings.json"]


def test_flat_is_exact_brute_force(store, built, queries):
    k = 10
    r = load_index(built["Flat"])
    all_scores, best = brute_force(store, queries, k)
    hits = r.search_batch(queries, k)
    for qi, hs in enumerate(hits):
        assert [h.rank for h in hs] == list(range(1, k + 1))
        np.testing.assert_allclose([h.score for h in hs], best[qi], atol=1e-5)
        # every returned row really has the score reported (ties may order rows differently)
        np.testing.assert_allclose([all_scores[qi, h.row] for h in hs], [h.score for h in hs], atol=1e-5)
        assert [h.pid for h in hs] == store.table.column("pid").take([h.row for h in hs]).to_pylist()
    assert r.search(queries[0], k) == hits[0]


def tie_aware_recall(approx, exact_scores_row_k: np.ndarray, all_scores_row: np.ndarray) -> float:
    """Share of returned rows whose true score reaches the exact k-th best score (ties count as hits)."""
    kth = exact_scores_row_k[-1]
    return float(np.mean([all_scores_row[h.row] >= kth - 1e-6 for h in approx])) if approx else 0.0


@pytest.mark.parametrize(
    "factory, options, minimum",
    [("HNSW32", {"ef_search": 256}, 0.98), ("IVF16,Flat", {"nprobe": 16}, 1.0), ("IVF16,Flat", {"nprobe": 8}, 0.85),
     ("IVF16,PQ16", {"nprobe": 16}, 0.8)],
)
def test_ann_recall_against_exact(store, built, queries, factory, options, minimum):
    k = 10
    all_scores, best = brute_force(store, queries, k)
    r = load_index(built[factory]).configure(**options)
    hits = r.search_batch(queries, k)
    recall = np.mean([tie_aware_recall(h, best[i], all_scores[i]) for i, h in enumerate(hits)])
    assert recall >= minimum, f"{factory} {options}: recall@{k} {recall:.3f}"


def test_query_time_options_take_effect(store, built, queries):
    all_scores, best = brute_force(store, queries, 10)

    def recall(r):
        return np.mean([tie_aware_recall(h, best[i], all_scores[i]) for i, h in enumerate(r.search_batch(queries, 10))])

    ivf = load_index(built["IVF16,Flat"])
    assert recall(ivf.configure(nprobe=1)) < recall(ivf.configure(nprobe=16)) == 1.0
    hnsw = load_index(built["HNSW32"])
    assert recall(hnsw.configure(ef_search=1)) < recall(hnsw.configure(ef_search=256))


def test_search_options_follow_the_index(built):
    hnsw = load_index(built["HNSW32"])
    assert hnsw.SEARCH_OPTIONS == ("ef_search",) and hnsw.ef_search == 128  # our default, not faiss's 16
    hnsw.set_search_params(ef_search=40)
    assert hnsw.index.hnsw.efSearch == 40
    ivf = load_index(built["IVF16,Flat"])
    assert ivf.SEARCH_OPTIONS == ("nprobe",)
    ivf.configure(nprobe=1000)
    assert ivf.nprobe == 16  # capped at nlist
    with pytest.raises(BadInputError, match="HNSW"):
        ivf.configure(ef_search=10)
    with pytest.raises(BadInputError, match="IVF"):
        load_index(built["Flat"]).configure(nprobe=4)
    with pytest.raises(BadInputError, match="integer"):
        hnsw.configure(ef_search=0)
    opened = DenseRetriever.open(built["HNSW32"], ef_search=64, encoder=f"hash:{DIM}", device="cpu")
    assert opened.index.hnsw.efSearch == 64 and opened.ef_search == 64


def test_k_factor_sets_the_exact_rerank_depth(store, built, queries):
    import faiss

    r = load_index(built["IVF16,PQ8,RFlat"])
    assert r.SEARCH_OPTIONS == ("nprobe", "k_factor") and r.k_factor == 4
    refine = faiss.downcast_index(r.index)
    assert isinstance(refine, faiss.IndexRefine) and refine.k_factor == 4
    with pytest.raises(BadInputError, match="RFlat"):
        load_index(built["HNSW32"]).configure(k_factor=2)
    with pytest.raises(BadInputError, match="integer"):
        r.configure(k_factor=0)
    all_scores, best = brute_force(store, queries, 10)

    def recall(r):
        return np.mean([tie_aware_recall(h, best[i], all_scores[i]) for i, h in enumerate(r.search_batch(queries, 10))])

    # PQ8 codes alone are coarse; re-scoring 16 x k candidates with the exact vectors recovers the true top-k
    assert recall(r.configure(nprobe=16, k_factor=1)) < recall(r.configure(k_factor=16)) >= 0.95
    assert refine.k_factor == 16
    opened = DenseRetriever.open(built["IVF16,PQ8,RFlat"], k_factor=8, encoder=f"hash:{DIM}", device="cpu")
    assert opened.k_factor == 8 and faiss.downcast_index(opened.index).k_factor == 8


def test_reused_embeddings_are_shared_not_recomputed(built):
    flat = np.load(built["Flat"] / EMBEDDINGS)
    for factory in ("HNSW32", "IVF16,PQ16"):
        np.testing.assert_array_equal(np.load(built[factory] / EMBEDDINGS), flat)
        m = json.loads((built[factory] / MANIFEST).read_text())
        assert m["build"]["reused_from"] == str(built["Flat"]) and m["encoder"]["dim"] == DIM
    assert json.loads((built["IVF16,PQ16"] / MANIFEST).read_text())["train_sample"] == 600  # capped at n


def test_query_edge_cases(store, built):
    r = load_index(built["Flat"])
    hits = r.search("castle", k=5000)
    assert len(hits) == len(store) and hits[-1].rank == len(store)
    with pytest.raises(BadInputError):
        r.search_batch("castle", 3)
    with pytest.raises(BadInputError):
        r.search_batch(["castle", "  "], 3)
    with pytest.raises(BadInputError):
        r.search_batch(["castle"], 0)
    assert r.search_batch([], 3) == []


# ----- resumable builds -----


def test_resume_after_a_crash_encodes_only_unfinished_chunks(store, built, tmp_path, caplog):
    out = tmp_path / "dense"
    crashing = CountingEncoder(fail_after=3)  # chunks of 100 rows: 3 finished, the 4th crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        DenseRetriever.build(store, out, encoder=crashing, chunk_size=100, progress=False)
    assert not out.exists()
    progress = json.loads((partial_dir(out) / ENCODE_DIR / "shard-00000.progress.json").read_text())
    assert progress["rows_done"] == 300 and progress["chunks"] == [[0, 100], [100, 200], [200, 300]]

    resumed = CountingEncoder()
    with caplog.at_level(logging.WARNING, logger="rag.retrievers.dense"):
        DenseRetriever.build(store, out, encoder=resumed, chunk_size=100, progress=False)
    assert "resuming" in caplog.text
    texts = [passage_text(p.title, p.text) for p in store.get_rows(range(len(store)))]
    assert [t for call in resumed.calls for t in call] == texts[300:]  # finished chunks never re-encoded
    np.testing.assert_array_equal(np.load(out / EMBEDDINGS), np.load(built["Flat"] / EMBEDDINGS))
    assert json.loads((out / MANIFEST).read_text())["build"]["resumed_from"] == 300
    assert not partial_dir(out).exists()


def test_partial_build_of_another_encoder_is_discarded(store, tmp_path, caplog):
    out = tmp_path / "dense"
    with pytest.raises(RuntimeError):
        DenseRetriever.build(store, out, encoder=CountingEncoder(dim=32, fail_after=2), chunk_size=100, progress=False)
    fresh = CountingEncoder(dim=DIM)
    with caplog.at_level(logging.WARNING, logger="rag.retrievers.dense"):
        DenseRetriever.build(store, out, encoder=fresh, chunk_size=100, progress=False)
    assert "other passages, another encoder" in caplog.text
    assert sum(map(len, fresh.calls)) == len(store)
    assert np.load(out / EMBEDDINGS).shape == (len(store), DIM)


SLOW_BUILD = """
import sys, time
from rag.corpus.store import PassageStore
from rag.encoders import HashEncoder
from rag.retrievers.dense import DenseRetriever

class Slow(HashEncoder):
    calls = 0
    def encode_batch(self, texts):
        Slow.calls += 1
        if Slow.calls > 2:
            time.sleep(600)  # parked mid-build until the test kills us
        return super().encode_batch(texts)

DenseRetriever.build(PassageStore(sys.argv[1]), sys.argv[2], encoder=Slow({dim}), chunk_size=100, progress=False)
"""


def test_resume_after_sigkill(store, built, tmp_path):
    out = tmp_path / "dense"
    script = tmp_path / "slow_build.py"
    script.write_text(SLOW_BUILD.format(dim=DIM))
    proc = subprocess.Popen([sys.executable, str(script), str(store.folder), str(out)])
    progress = partial_dir(out) / ENCODE_DIR / "shard-00000.progress.json"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if progress.exists() and json.loads(progress.read_text()).get("rows_done") == 200:
                break
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the build never finished two chunks")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()

    resumed = CountingEncoder()
    DenseRetriever.build(store, out, encoder=resumed, chunk_size=100, progress=False)
    assert sum(map(len, resumed.calls)) == len(store) - 200
    np.testing.assert_array_equal(np.load(out / EMBEDDINGS), np.load(built["Flat"] / EMBEDDINGS))


# ----- refusals -----


def test_bad_factories_fail_before_encoding(store, tmp_path):
    enc = CountingEncoder()
    with pytest.raises(BadInputError, match="FAISS cannot make"):
        DenseRetriever.build(store, tmp_path / "a", encoder=enc, factory="HNSW,Nonsense", progress=False)
    with pytest.raises(BadInputError, match="inverted lists"):
        DenseRetriever.build(store, tmp_path / "b", encoder=enc, factory="IVF4096,Flat", progress=False)
    with pytest.raises(BadInputError, match="must divide"):
        DenseRetriever.build(store, tmp_path / "c", encoder=enc, factory="IVF16,PQ7", progress=False)
    assert enc.calls == []


def test_existing_output_needs_overwrite(store, built):
    with pytest.raises(ArtifactError, match="overwrite"):
        DenseRetriever.build(store, built["Flat"], encoder=f"hash:{DIM}", progress=False)


def test_query_encoder_must_match_the_build_encoder(built):
    manifest = json.loads((built["Flat"] / MANIFEST).read_text())
    store = PassageStore(manifest["passages"]["path"])
    with pytest.raises(BadInputError, match="built with encoder hash:64"):
        DenseRetriever.load(built["Flat"], manifest, store, encoder="hash:32")
    with pytest.raises(BadInputError, match="rebuild the index with hash:65"):
        DenseRetriever.load(built["Flat"], manifest, store, encoder=HashEncoder(65))
    assert DenseRetriever.load(built["Flat"], manifest, store, encoder=f"hash:{DIM}").encoder.dim == DIM


def copy_index(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_damaged_folders_are_refused(built, tmp_path):
    bad = copy_index(built["Flat"], tmp_path / "truncated")
    data = (bad / INDEX_FILE).read_bytes()
    (bad / INDEX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        load_index(bad)

    bad = copy_index(built["Flat"], tmp_path / "garbled")
    (bad / INDEX_FILE).write_bytes(b"\0" * len(data))
    with pytest.raises(ArtifactError, match="index.faiss: content differs from the hash recorded"):
        load_index(bad)
    m = json.loads((bad / MANIFEST).read_text())
    del m["hashes"]  # as built before hashed manifests: FAISS itself refuses the file
    (bad / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="cannot be read by FAISS"):
        load_index(bad)

    bad = copy_index(built["Flat"], tmp_path / "no-embeddings")
    (bad / EMBEDDINGS).unlink()
    with pytest.raises(ArtifactError, match="missing file embeddings.npy"):
        load_index(bad)

    bad = copy_index(built["Flat"], tmp_path / "dim")
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["dim"] = 32
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest's dim differ from the settings"):
        load_index(bad)
    (bad / "settings.json").unlink()  # as built before settings.json: FAISS's dimension still refuses it
    del manifest["files"]["settings.json"], manifest["hashes"]["settings.json"]
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="64-d vectors"):
        load_index(bad)


@pytest.mark.parametrize("edit", [{"name": "65"}, {"precision": "fp16"}, {"normalize": False}])
def test_an_edited_encoder_in_the_manifest_is_refused(built, tmp_path, edit):
    bad = copy_index(built["Flat"], tmp_path / "edited")
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["encoder"].update(edit)
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"manifest's encoder.{next(iter(edit))} differ"):
        load_index(bad)


def test_embeddings_from_checks_every_byte_of_its_source(store, built, tmp_path):
    src = copy_index(built["Flat"], tmp_path / "src")
    data = bytearray((src / EMBEDDINGS).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte the sampled hash may not see
    (src / EMBEDDINGS).write_bytes(bytes(data))
    manifest = json.loads((src / MANIFEST).read_text())
    manifest["hashes"][EMBEDDINGS]["sample"] = None  # only the full hash can tell
    (src / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="embeddings.npy: sha256 differs"):
        DenseRetriever.build(store, tmp_path / "x", embeddings_from=src, factory="HNSW8", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_other_passage_store_is_refused(built, tmp_path):
    other = make_store(tmp_path / "other", synthetic_texts(600, seed=5))
    with pytest.raises(ArtifactError, match="fingerprint"):
        load_index(built["Flat"], passages=other)
    with pytest.raises(BadInputError, match="other passages"):
        DenseRetriever.build(other, tmp_path / "x", embeddings_from=built["Flat"], progress=False)
