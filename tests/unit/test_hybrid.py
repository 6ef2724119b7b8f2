"""Reciprocal-rank fusion: hand-computed scores with fake members, then real BM25 members on disk."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.artifacts import MANIFEST, atomic_dir
from rag.corpus.store import PassageStore, PassageWriter
from rag.errors import ArtifactError, BadInputError
from rag.retrievers import load_index
from rag.retrievers.base import Retriever
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.hybrid import HybridRetriever, rrf_fuse
from rag.types import Hit, Passage

TEXTS = ["river castle", "castle dragon", "dragon ocean", "ocean whale", "whale river", "tiger lion"]


def make_store(folder: Path, texts=TEXTS) -> PassageStore:
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(pid=f"p{i}", doc_id=f"d{i}", title="", text=t) for i, t in enumerate(texts))
        w.close()
    return PassageStore(folder)


class FakeRetriever(Retriever):
    """Returns fixed rows in order for every query; records the depth it was asked for."""

    SEARCH_OPTIONS = ("nprobe",)

    def __init__(self, store, rows):
        self.store, self.rows, self.asked = store, rows, []

    def search_batch(self, queries, k):
        self.asked.append(k)
        return [[Hit(pid=f"p{r}", score=1.0, rank=i + 1, row=r) for i, r in enumerate(self.rows[:k])] for _ in queries]

    @classmethod
    def load(cls, folder, manifest, store):  # pragma: no cover - never on disk
        raise NotImplementedError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("h") / "passages")


def test_rrf_matches_hand_computation(store):
    a, b = FakeRetriever(store, [0, 1, 2]), FakeRetriever(store, [2, 0, 3])
    [hits] = HybridRetriever(store, [a, b]).search_batch(["q"], 4)
    expected = {0: 1 / 61 + 1 / 62, 2: 1 / 63 + 1 / 61, 1: 1 / 62, 3: 1 / 63}
    assert [h.row for h in hits] == [0, 2, 1, 3]
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert [h.score for h in hits] == pytest.approx([expected[r] for r in (0, 2, 1, 3)], rel=1e-12)
    assert [h.pid for h in hits] == ["p0", "p2", "p1", "p3"]


def test_weights_and_rrf_k(store):
    a, b = FakeRetriever(store, [0, 1, 2]), FakeRetriever(store, [2, 0, 3])
    [hits] = HybridRetriever(store, [a, b], rrf_k=0, weights=[1, 3]).search_batch(["q"], 2)
    # row 2: 1/3 + 3/1 = 3.333; row 0: 1/1 + 3/2 = 2.5; row 3: 3/3 = 1; row 1: 1/2
    assert [(h.row, round(h.score, 6)) for h in hits] == [(2, 3.333333), (0, 2.5)]


def test_ties_prefer_the_better_best_rank_then_the_lower_row(store):
    a, b = FakeRetriever(store, [4, 1]), FakeRetriever(store, [3, 5])
    [hits] = HybridRetriever(store, [a, b]).search_batch(["q"], 4)
    assert [h.row for h in hits] == [3, 4, 1, 5]
    assert rrf_fuse([[], []], 5, 60, [1, 1]) == []


def test_members_are_fetched_at_fusion_depth(store):
    a, b = FakeRetriever(store, [0]), FakeRetriever(store, [1])
    h = HybridRetriever(store, [a, b], fusion_depth=50)
    h.search_batch(["q"], 3)
    h.search_batch(["q"], 80)
    assert a.asked == [50, 80] and b.asked == [50, 80]


def test_members_must_share_the_store(store, tmp_path):
    other = make_store(tmp_path / "other", ["something else"])
    with pytest.raises(BadInputError, match="same passage store"):
        HybridRetriever(store, [FakeRetriever(store, [0]), FakeRetriever(other, [0])])
    with pytest.raises(BadInputError, match="at least two"):
        HybridRetriever(store, [FakeRetriever(store, [0])])
    with pytest.raises(BadInputError, match="one weight per member"):
        HybridRetriever(store, [FakeRetriever(store, [0]), FakeRetriever(store, [1])], weights=[1])


def test_search_options_go_to_members_that_take_them(store):
    a, b = FakeRetriever(store, [0]), FakeRetriever(store, [1])
    h = HybridRetriever(store, [a, b]).configure(nprobe=7, fusion_depth=20)
    assert a.nprobe == 7 and b.nprobe == 7 and h.fusion_depth == 20
    with pytest.raises(BadInputError, match="ef_search"):
        h.configure(ef_search=3)


@pytest.fixture()
def built(store, tmp_path):
    root = tmp_path / "indexes"
    BM25Retriever.build(store, root / "lucene", progress=False)
    BM25Retriever.build(store, root / "okapi", engine="rank-bm25", variant="okapi", progress=False)
    return root


def test_build_and_load_with_real_members(store, built):
    out = HybridRetriever.build(store, built / "hybrid", members=f"{built / 'lucene'},{built / 'okapi'}", rrf_k=10, progress=False)
    assert [p.name for p in out.iterdir()] == [MANIFEST]  # a hybrid stores only its manifest
    m = json.loads((out / MANIFEST).read_text())
    assert m["kind"] == "index/hybrid" and m["parameters"] == {"rrf_k": 10.0, "weights": [1.0, 1.0], "fusion_depth": 100}
    assert [e["relpath"] for e in m["members"]] == ["../lucene", "../okapi"]
    assert m["passages"]["fingerprint"] == store.fingerprint
    h = load_index(out)
    hits = h.search("castle dragon", 3)
    assert hits[0].row == 1 and hits[0].score == pytest.approx(2 / 11)
    assert h.configure(n_threads=2).search("castle dragon", 3) == hits

    moved = shutil.move(str(built), str(built.parent / "moved"))  # members found relative to the hybrid folder
    assert load_index(Path(moved) / "hybrid").search("castle dragon", 3) == hits


def test_build_refuses_a_member_over_another_store(store, built, tmp_path):
    other = make_store(tmp_path / "other", ["tiger lion", "lion"])
    BM25Retriever.build(other, built / "other", progress=False)
    with pytest.raises(ArtifactError, match="every member must index the same passage store"):
        HybridRetriever.build(store, built / "hybrid", members=[built / "lucene", built / "other"], progress=False)
    with pytest.raises(BadInputError, match="at least two"):
        HybridRetriever.build(store, built / "hybrid", members=str(built / "lucene"), progress=False)
    assert not (built / "hybrid").exists()


def test_load_refuses_missing_or_broken_member(store, built):
    out = HybridRetriever.build(store, built / "hybrid", members=[built / "lucene", built / "okapi"], progress=False)
    data = (built / "okapi" / "tokens.npy").read_bytes()
    (built / "okapi" / "tokens.npy").write_bytes(data[:-8])
    with pytest.raises(ArtifactError, match="tokens.npy"):
        load_index(out)
    shutil.rmtree(built / "okapi")
    with pytest.raises(ArtifactError, match="member index not found"):
        load_index(out)


def test_fuses_bm25_with_a_dense_member(store, tmp_path):
    pytest.importorskip("faiss")
    from rag.retrievers.dense import DenseRetriever

    BM25Retriever.build(store, tmp_path / "bm25", progress=False)
    DenseRetriever.build(store, tmp_path / "dense", encoder="hash:64", progress=False)
    out = HybridRetriever.build(store, tmp_path / "h", members=[tmp_path / "bm25", tmp_path / "dense"], progress=False)
    h = load_index(out)
    assert [type(m).__name__ for m in h.members] == ["BM25Retriever", "DenseRetriever"]
    hits = h.search("dragon ocean", 3)
    assert hits[0].row == 2 and [x.rank for x in hits] == [1, 2, 3]
