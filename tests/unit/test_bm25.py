"""BM25 index kind: both engines, parity on a synthetic corpus, deterministic ties, refusals on load."""
from __future__ import annotations

import os

import json
from pathlib import Path

import numpy as np
import pytest

from rag.artifacts import MANIFEST, atomic_dir
from rag.corpus.store import PassageStore, PassageWriter, passage_text
from rag.errors import ArtifactError, BadInputError
from rag.retrievers import INDEXES, load_index
from rag.retrievers.bm25 import ENGINES, VARIANTS, BM25Retriever, topk_rows
from rag.tokenize import Tokenizer
from rag.types import Passage

WORDS = (
    "river mountain castle dragon knight forest ocean island planet comet violin piano guitar opera "
    "election senate treaty empire harbor railway bridge tunnel glacier volcano desert canyon meadow "
    "orchard falcon eagle salmon whale tiger zebra lion bamboo cactus tulip"
).split()


def make_store(folder: Path, texts: list[str], titles: list[str] | None = None) -> PassageStore:
    titles = titles or [f"Doc {i}" for i in range(len(texts))]
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(pid=f"d{i}#0", doc_id=f"d{i}", title=t, text=x) for i, (t, x) in enumerate(zip(titles, texts)))
        w.close()
    return PassageStore(folder)


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    # Zipf-ish word choice so some stems are in most passages (exercises idf flooring) and some are rare
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)), p=p)) for _ in range(n)]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> PassageStore:
    return make_store(tmp_path_factory.mktemp("store") / "passages", synthetic_texts(300))


@pytest.fixture(scope="module")
def queries() -> list[str]:
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 5)))) for _ in range(60)]


@pytest.fixture(scope="module")
def okapi_pair(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("okapi")
    for engine in ENGINES:
        BM25Retriever.build(store, root / engine, engine=engine, variant="okapi", k1=1.2, b=0.75, progress=False)
    return load_index(root / "bm25s"), load_index(root / "rank-bm25")


def test_tokenizer_reproduces_bm25s_tokenize():
    import bm25s
    import Stemmer

    texts = ["The Running of the Bulls, in 1926!", "Kings' crowns; a KING crowned", "x y it's e-mail naïve café"]
    ref = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False)
    assert Tokenizer().tokenize_batch(texts) == ref
    assert Tokenizer().tokenize("The Running of the Bulls") == ["run", "bull"]


def test_tokenizer_spec_round_trips_and_refuses_unknown():
    spec = Tokenizer().spec()
    assert Tokenizer.from_spec(spec).spec() == spec
    with pytest.raises(ArtifactError, match="rebuild"):
        Tokenizer.from_spec({**spec, "version": 99})
    with pytest.raises(ArtifactError, match="stopword"):
        Tokenizer.from_spec({**spec, "stopwords_sha256": "0" * 16})


def test_build_writes_manifest_and_plain_files(store, tmp_path):
    out = BM25Retriever.build(store, tmp_path / "bm25", progress=False)
    m = json.loads((out / MANIFEST).read_text())
    assert m["kind"] == "index/bm25" and m["format"] == 1 and m["engine"] == "bm25s"
    assert m["passages"] == {"path": str(store.folder), "fingerprint": store.fingerprint, "n_passages": 300,
                             "abspath": str(store.folder.resolve()),
                             "relpath": os.path.relpath(store.folder.resolve(), (tmp_path / "bm25").resolve())}
    assert m["parameters"]["variant"] == "lucene" and m["parameters"]["k1"] == 0.9 and m["parameters"]["b"] == 0.4
    assert m["tokenizer"]["stemmer"] == "english" and m["tokenizer"]["stopwords"] == "en"
    assert {"bm25s", "PyStemmer", "numpy"} <= set(m["libraries"])
    on_disk = {p.name for p in out.iterdir()} - {MANIFEST}
    assert set(m["files"]) == on_disk and "data.csc.index.npy" in on_disk
    assert all(m["files"][f] == (out / f).stat().st_size for f in on_disk)
    assert not [f for f in on_disk if f.endswith((".pkl", ".pickle"))]


def test_search_finds_the_passage_and_title_counts(tmp_path):
    texts = ["the violin and the piano", "a dragon guards the castle", "whales swim in the ocean", "railway bridge"]
    st = make_store(tmp_path / "p", texts, titles=["Music", "Legends", "Sea", "Zebra crossings"])
    r = load_index(BM25Retriever.build(st, tmp_path / "i", progress=False))
    [hits] = r.search_batch(["Where do whales swim?"], 3)
    assert [h.pid for h in hits] == ["d2#0"] and hits[0].rank == 1 and hits[0].row == 2 and hits[0].score > 0
    assert r.search("zebras", 2)[0].pid == "d3#0"  # the title is indexed too (stemmed: zebras -> zebra)
    assert r.passages(r.search("dragon castle", 1))[0].text == texts[1]


def test_engines_agree_exactly_on_okapi(okapi_pair, queries):
    fast, ref = okapi_pair
    a, b = fast.search_batch(queries, 10), ref.search_batch(queries, 10)
    assert sum(len(h) for h in a) > 300
    for ha, hb in zip(a, b):
        assert [h.pid for h in ha] == [h.pid for h in hb]
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], rtol=1e-6)


def test_robertson_is_okapi_without_the_k1_plus_1_factor(store, okapi_pair, queries, tmp_path):
    rob = load_index(BM25Retriever.build(store, tmp_path / "rob", variant="robertson", k1=1.2, b=0.75, progress=False))
    for ha, hb in zip(rob.search_batch(queries, 10), okapi_pair[0].search_batch(queries, 10)):
        assert [h.row for h in ha] == [h.row for h in hb]
        np.testing.assert_allclose([h.score * 2.2 for h in ha], [h.score for h in hb], rtol=1e-5)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_returns_only_matching_passages(variant, tmp_path):
    texts = ["tiger tiger", "tiger lion"] + ["ocean whale"] * 20
    st = make_store(tmp_path / "p", texts)
    r = load_index(BM25Retriever.build(st, tmp_path / variant, variant=variant, progress=False))
    hits = r.search("tiger", 10)
    assert [h.row for h in hits] == [0, 1]  # higher tf first; passages without "tiger" are not hits
    assert r.search("unicorn", 5) == []


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_ties_are_broken_by_row_even_beyond_the_fetch_window(engine, tmp_path):
    # 12 identical passages tie; k=2 fetches a window of 5, which cannot hold all ties
    # (fewer than half the passages, so okapi's Robertson idf stays positive)
    texts = ["ocean whale"] * 10 + ["harbor falcon"] * 12 + ["ocean whale"] * 10
    st = make_store(tmp_path / "p", texts)
    r = load_index(BM25Retriever.build(st, tmp_path / "i", engine=engine, variant="okapi", progress=False))
    assert [h.row for h in r.search("falcon", 2)] == [10, 11]
    assert [h.row for h in r.search("falcon harbor", 20)] == list(range(10, 22))


def test_topk_rows_orders_by_score_then_row():
    scores = np.array([1.0, 3.0, 2.0, 3.0, 0.0, 2.0])
    rows, sc = topk_rows(scores, 3)
    assert rows.tolist() == [1, 3, 2] and sc.tolist() == [3.0, 3.0, 2.0]
    assert topk_rows(scores, 10)[0].tolist() == [1, 3, 2, 5, 0]  # the zero-score row is not a match


def test_queries_and_k_are_checked(okapi_pair):
    r = okapi_pair[0]
    with pytest.raises(BadInputError, match="empty"):
        r.search_batch(["river", "  "], 3)
    with pytest.raises(BadInputError, match="positive"):
        r.search("river", 0)
    with pytest.raises(BadInputError, match="list of queries"):
        r.search_batch("river", 3)
    assert r.search_batch([], 3) == []
    assert len(r.search("river", 10_000)) <= 300  # k beyond the corpus is fine


def test_bad_build_parameters(store, tmp_path):
    with pytest.raises(BadInputError, match="bm25s, rank-bm25"):
        BM25Retriever.build(store, tmp_path / "x", engine="lucene", progress=False)
    with pytest.raises(BadInputError, match="okapi"):
        BM25Retriever.build(store, tmp_path / "x", engine="rank-bm25", variant="lucene", progress=False)
    with pytest.raises(BadInputError, match="variant"):
        BM25Retriever.build(store, tmp_path / "x", variant="bm26", progress=False)
    with pytest.raises(BadInputError, match="b must"):
        BM25Retriever.build(store, tmp_path / "x", b=1.5, progress=False)
    assert not (tmp_path / "x").exists()


def test_search_options(okapi_pair, queries):
    r = okapi_pair[0]
    before = r.search_batch(queries, 5)
    assert r.configure(n_threads=2).search_batch(queries, 5) == before
    r.configure(n_threads=0)
    with pytest.raises(BadInputError, match="ef_search"):
        r.configure(ef_search=10)


# -- refusals --------------------------------------------------------------------------------------------


def test_load_refuses_an_index_of_another_store(store, tmp_path):
    out = BM25Retriever.build(store, tmp_path / "i", progress=False)
    other = make_store(tmp_path / "other", ["a different corpus entirely"])
    with pytest.raises(ArtifactError, match="rebuild the index over these passages, or pass --passages"):
        load_index(out, passages=other)
    assert load_index(out, passages=store.folder).search("river", 1)


@pytest.mark.parametrize("engine,victim", [("bm25s", "data.csc.index.npy"), ("bm25s", "vocab.index.json"), ("rank-bm25", "tokens.npy")])
def test_load_refuses_truncated_or_missing_files(store, tmp_path, engine, victim):
    out = BM25Retriever.build(store, tmp_path / "i", engine=engine, variant="okapi", progress=False)
    data = (out / victim).read_bytes()
    (out / victim).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=f"{victim} is .*truncated"):
        load_index(out)
    (out / victim).unlink()
    with pytest.raises(ArtifactError, match=f"missing file {victim}"):
        load_index(out)


def test_load_refuses_a_folder_without_manifest(store, tmp_path):
    out = BM25Retriever.build(store, tmp_path / "i", progress=False)
    (out / MANIFEST).unlink()  # what an interrupted build that was copied by hand looks like
    with pytest.raises(ArtifactError, match="interrupted build"):
        load_index(out)


def test_failed_build_leaves_nothing_behind(store, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ENGINES["bm25s"], "build", boom)
    with pytest.raises(RuntimeError):
        BM25Retriever.build(store, tmp_path / "i", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_index_needs_overwrite(store, tmp_path):
    out = BM25Retriever.build(store, tmp_path / "i", progress=False)
    with pytest.raises(ArtifactError, match="overwrite"):
        BM25Retriever.build(store, out, progress=False)
    BM25Retriever.build(store, out, overwrite=True, variant="atire", progress=False)
    assert load_index(out).manifest["parameters"]["variant"] == "atire"


def test_every_passage_is_indexed_across_row_groups(tmp_path):
    # one add() call spanning several row groups (a regression: rows after the first flush were lost)
    with atomic_dir(tmp_path / "p") as tmp:
        w = PassageWriter(tmp, row_group=7)
        w.add(Passage(pid=f"d{i}#0", doc_id=f"d{i}", title="", text=f"word{i} common") for i in range(30))
        w.close()
    st = PassageStore(tmp_path / "p")
    r = load_index(BM25Retriever.build(st, tmp_path / "i", progress=False, batch_size=4))
    assert r.engine.n == 30 and [h.pid for h in r.search("word29", 3)] == ["d29#0"]
    assert len(r.search("common", 100)) == 30


def test_registered_with_options():
    assert INDEXES["bm25"] is BM25Retriever
    assert BM25Retriever.BUILD_OPTIONS == ("engine", "k1", "b", "variant")
    assert passage_text("T", "x") == "T\nx"
