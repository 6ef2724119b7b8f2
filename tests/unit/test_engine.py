"""The engine setting, shard plans, the shard log, the actor resource decision, and sharded builds on the local
engine (resume per shard, equality with unsharded builds). Ray itself: tests/integration/test_ray_engine.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag.engine import EngineConfig, Shard, ShardLog, ShardWorker, actor_resources, engine_config, plan_shards
from rag.engine.shards import DONE
from rag.errors import BadInputError


def test_engine_config_parsing():
    assert EngineConfig().kind == "local" and not EngineConfig().is_ray
    assert engine_config("local", "10.0.0.1:6379").is_ray  # an address implies ray
    with pytest.raises(BadInputError, match="unknown engine"):
        EngineConfig(kind="spark")
    with pytest.raises(BadInputError, match="positive integer"):
        EngineConfig(kind="ray", workers=0)
    with pytest.raises(BadInputError, match="needs --exec-engine ray"):
        EngineConfig(kind="local", address="h:1")


def test_plan_shards_covers_rows_once():
    for n, k in [(10, 3), (7, 7), (5, 9), (100_001, None), (0, 2)]:
        plan = plan_shards(n, k)
        assert plan[0].start == 0 and plan[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(plan, plan[1:]))
        assert [s.index for s in plan] == list(range(len(plan)))
    assert len(plan_shards(100_001, None, shard_rows=50_000)) == 3
    assert len(plan_shards(5, 9)) == 5  # never an empty shard


def test_plan_is_one_shard_unless_sharded():
    assert EngineConfig().plan(10) == [Shard(0, 0, 10)] and not EngineConfig().sharded
    assert EngineConfig().plan(0) == [Shard(0, 0, 0)]
    assert EngineConfig(shards=3).sharded and EngineConfig(shards=3).plan(10) == plan_shards(10, 3)
    assert EngineConfig(kind="ray").sharded and len(EngineConfig(kind="ray").plan(120_000)) == 3  # ~SHARD_ROWS each
    assert EngineConfig(kind="ray", shards=2).plan(5, shards=5) == [Shard(i, i, i + 1) for i in range(5)]


class Counting(ShardWorker):
    def run(self, shard):
        for _ in range(shard.start, shard.stop):
            self.report(1, 10)
        return {"rows": shard.stop - shard.start}


def test_workers_report_progress_within_a_shard(tmp_path):
    """On the local engine every report reaches `progress` as it is made; the record keeps the shard's totals (which
    is what ray passes on when the shard ends)."""
    from rag.engine import run_shards

    seen = []
    plan = plan_shards(5, 2)
    done = run_shards(EngineConfig(), Counting, {}, plan, ShardLog(tmp_path, {}, plan), progress=lambda *a: seen.append(a))
    assert seen == [(1, 10)] * 5
    assert [done[i]["progress"] for i in (0, 1)] == [[2, 20], [3, 30]] and done[1]["rows"] == 3


def test_shard_log_resumes_only_the_same_build(tmp_path):
    plan = plan_shards(10, 2)
    log = ShardLog(tmp_path, {"a": 1}, plan)
    log.mark(1, {"rows": 5})
    again = ShardLog(tmp_path, {"a": 1}, plan)
    assert again.pending(plan) == [plan[0]] and again.done[1] == {"rows": 5}
    other = ShardLog(tmp_path, {"a": 2}, plan)  # another build: everything is redone
    assert other.pending(plan) == plan
    assert json.loads((tmp_path / DONE).read_text())["done"] == {}


def test_actor_resources_gpu_decision():
    cpu_only = {"CPU": 16.0}
    r = actor_resources(cpu_only, None, uses_gpu=True)
    assert (r.workers, r.num_cpus, r.num_gpus, r.device) == (16, 1.0, 0.0, "cpu")
    r = actor_resources(cpu_only, 4, uses_gpu=True)
    assert (r.workers, r.num_cpus, r.threads) == (4, 4.0, 4) and "num_gpus" not in r.ray_args()
    gpus = {"CPU": 32.0, "GPU": 4.0}
    r = actor_resources(gpus, None, uses_gpu=True)  # one actor per GPU, a whole GPU each
    assert (r.workers, r.num_gpus, r.device) == (4, 1.0, "cuda") and r.ray_args()["num_gpus"] == 1.0
    r = actor_resources(gpus, 8, uses_gpu=True)  # more actors than GPUs: they share
    assert r.num_gpus == 0.5 and r.workers == 8
    r = actor_resources(gpus, 2, uses_gpu=True)
    assert r.num_gpus == 1.0 and r.num_cpus == 16.0
    r = actor_resources(gpus, None, uses_gpu=False)  # CPU stages (linking) never ask for GPUs
    assert r.num_gpus == 0 and r.workers == 32
    r = actor_resources({"CPU": 2.0, "GPU": 3.0}, 3, uses_gpu=True)
    assert r.num_gpus == 1.0 and abs(r.num_cpus - 2 / 3) < 1e-9
    with pytest.raises(BadInputError):
        actor_resources({"CPU": 0.0}, None)


def test_read_row_range_spans_row_groups(tmp_path):
    from rag.artifacts import atomic_dir
    from rag.corpus.store import PassageStore, PassageWriter, read_row_range
    from rag.types import Passage

    with atomic_dir(tmp_path / "p") as tmp:
        w = PassageWriter(tmp, row_group=4)
        w.add(Passage(f"d{i}#0", f"d{i}", f"T{i}", f"text {i}") for i in range(11))
        w.close()
    store = PassageStore(tmp_path / "p")
    for a, b in [(0, 11), (3, 9), (4, 8), (10, 11), (5, 5)]:
        assert read_row_range(store.folder, a, b, ("pid",))["pid"] == [f"d{i}#0" for i in range(a, b)]
    with pytest.raises(BadInputError):
        read_row_range(store.folder, 5, 12)


# --- sharded builds on the local engine ------------------------------------------------------------------


def test_sharded_dense_equals_unsharded_and_resumes(tmp_path):
    pytest.importorskip("faiss")
    from rag.retrievers import load_index
    from rag.retrievers.dense import DenseRetriever
    from tests.unit.test_dense import CountingEncoder, make_store, synthetic_texts

    store = make_store(tmp_path / "p", synthetic_texts(300))
    DenseRetriever.build(store, tmp_path / "one", encoder="hash:64", progress=False)
    enc = CountingEncoder(64, fail_after=2)  # dies in the third shard
    with pytest.raises(RuntimeError, match="simulated crash"):
        DenseRetriever.build(store, tmp_path / "sh", encoder=enc, progress=False, engine=EngineConfig(shards=5), chunk_size=1000)
    done = json.loads((tmp_path / "sh.partial" / "encode" / DONE).read_text())["done"]
    assert sorted(done) == ["0", "1"]
    enc2 = CountingEncoder(64)
    DenseRetriever.build(store, tmp_path / "sh", encoder=enc2, progress=False, engine=EngineConfig(shards=5), chunk_size=1000)
    assert len(enc2.calls) == 3 and sum(map(len, enc2.calls)) == 180  # only shards 2..4 encoded again
    one, sh = load_index(tmp_path / "one"), load_index(tmp_path / "sh")
    assert np.array_equal(one.embeddings(), sh.embeddings())
    m = sh.manifest
    assert [s["start"] for s in m["shards"]] == [0, 60, 120, 180, 240] and m["engine"]["shards"] == 5
    assert not (tmp_path / "sh" / "encode").exists() and not (tmp_path / "sh" / "index.faiss").exists()
    q = one.embeddings()[:40]
    s1, r1 = one.search_vectors(q, 10)
    s2, r2 = sh.search_vectors(q, 10)
    assert_same_up_to_ties(s1, r1, s2, r2)
    assert [h.score for h in one.search("river castle", 5)] == pytest.approx([h.score for h in sh.search("river castle", 5)])


def assert_same_up_to_ties(s1, r1, s2, r2, atol=1e-5):
    """Same scores, and the same rows wherever a score is not tied with the k-th (the cut may split a tie)."""
    np.testing.assert_allclose(s1, s2, atol=atol)
    for a1, b1, a2, b2 in zip(s1, r1, s2, r2):
        kth = a1[-1]
        assert set(b1[a1 > kth + atol].tolist()) == set(b2[a2 > kth + atol].tolist())


@pytest.mark.parametrize("factory", ["Flat", "IVF8,PQ8"])
def test_one_dense_shard_is_the_local_index(tmp_path, factory):
    """A local build is the one-shard case of the sharded build: --shards 1 writes the same vectors and the same index
    (as shards/shard-00000.faiss); with more shards every shard carries the local index's trained codebooks."""
    faiss = pytest.importorskip("faiss")
    from rag.retrievers.dense import DenseRetriever
    from tests.unit.test_dense import make_store, synthetic_texts

    store = make_store(tmp_path / "p", synthetic_texts(400, seed=6))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for name, engine in (("one", None), ("sh1", EngineConfig(shards=1)), ("sh3", EngineConfig(shards=3))):
            DenseRetriever.build(store, tmp_path / name, encoder="hash:64", factory=factory, chunk_size=64, progress=False,
                                 engine=engine)
    finally:
        faiss.omp_set_num_threads(threads)
    one, sh1 = tmp_path / "one", tmp_path / "sh1"
    vectors = (one / "embeddings.npy").read_bytes()
    assert vectors == (sh1 / "embeddings.npy").read_bytes() == (tmp_path / "sh3" / "embeddings.npy").read_bytes()
    assert (one / "index.faiss").read_bytes() == (sh1 / "shards" / "shard-00000.faiss").read_bytes()
    if "PQ" in factory:
        def codebooks(path):
            index = faiss.read_index(str(path))  # kept alive while its IVF part is read
            return faiss.vector_to_array(faiss.downcast_index(faiss.extract_index_ivf(index)).pq.centroids)

        for i in range(3):
            shard = tmp_path / "sh3" / "shards" / f"shard-{i:05d}.faiss"
            np.testing.assert_array_equal(codebooks(one / "index.faiss"), codebooks(shard))


def test_sharded_encoding_resumes_within_a_shard(tmp_path):
    pytest.importorskip("faiss")
    from rag.retrievers.dense import DenseRetriever
    from tests.unit.test_dense import CountingEncoder, make_store, synthetic_texts

    store = make_store(tmp_path / "p", synthetic_texts(300, seed=7))
    DenseRetriever.build(store, tmp_path / "one", encoder="hash:64", progress=False)
    crashing = CountingEncoder(64, fail_after=4)  # shard 0: 3 chunks of 50; shard 1: one chunk, then the crash
    two = {"progress": False, "engine": EngineConfig(shards=2), "chunk_size": 50}
    with pytest.raises(RuntimeError, match="simulated crash"):
        DenseRetriever.build(store, tmp_path / "sh", encoder=crashing, **two)
    resumed = CountingEncoder(64)
    DenseRetriever.build(store, tmp_path / "sh", encoder=resumed, **two)
    assert [len(c) for c in resumed.calls] == [50, 50]  # rows 200-300: the unfinished chunks of shard 1 only
    assert (tmp_path / "one" / "embeddings.npy").read_bytes() == (tmp_path / "sh" / "embeddings.npy").read_bytes()
    assert json.loads((tmp_path / "sh" / "manifest.json").read_text())["build"]["resumed_from"] == 200


def test_sharded_ivf_shares_one_quantizer(tmp_path):
    pytest.importorskip("faiss")
    from rag.retrievers import load_index
    from rag.retrievers.dense import DenseRetriever
    from tests.unit.test_dense import make_store, synthetic_texts

    store = make_store(tmp_path / "p", synthetic_texts(400, seed=3))
    DenseRetriever.build(store, tmp_path / "one", encoder="hash:64", factory="IVF8,Flat", progress=False)
    DenseRetriever.build(store, tmp_path / "sh", encoder="hash:64", factory="IVF8,Flat", progress=False, engine=EngineConfig(shards=3))
    from rag.retrievers.faiss_index import ivf_parts

    one, sh = load_index(tmp_path / "one").configure(nprobe=2), load_index(tmp_path / "sh").configure(nprobe=2)
    assert sh.nprobe == 2 and len(ivf_parts(sh.index)) == 3 and all(p.nprobe == 2 for p in ivf_parts(sh.index))
    q = one.embeddings()[:50]
    s1, r1 = one.search_vectors(q, 10)
    s2, r2 = sh.search_vectors(q, 10)
    assert_same_up_to_ties(s1, r1, s2, r2)


def test_k_factor_reaches_every_shard(tmp_path):
    pytest.importorskip("faiss")
    from rag.retrievers import load_index
    from rag.retrievers.dense import DenseRetriever
    from rag.retrievers.faiss_index import refine_parts
    from tests.unit.test_dense import make_store, synthetic_texts

    store = make_store(tmp_path / "p", synthetic_texts(400, seed=4))
    DenseRetriever.build(store, tmp_path / "sh", encoder="hash:64", factory="IVF8,PQ8,RFlat", progress=False,
                         engine=EngineConfig(shards=2))
    sh = load_index(tmp_path / "sh").configure(k_factor=7)
    assert sh.SEARCH_OPTIONS == ("nprobe", "k_factor") and len(refine_parts(sh.index)) == 2
    assert all(r.k_factor == 7 for r in refine_parts(sh.index))


def test_sharded_corpus_build_is_byte_identical(tmp_path):
    from rag.corpus.build import build_passages

    srcs = []
    for f in range(3):
        p = tmp_path / f"src{f}.jsonl"
        p.write_text("".join(json.dumps({"id": f"{f}-{i}", "title": f"T{f} {i}", "text": " ".join(f"w{j}" for j in range(i * 9))}) + "\n"
                             for i in range(30)))
        srcs.append(p)
    a = build_passages(srcs, tmp_path / "a")
    b = build_passages(srcs, tmp_path / "b", engine=EngineConfig(shards=3))
    assert a["fingerprint"] == b["fingerprint"] and a["n_passages"] == b["n_passages"] and a["sources"] == b["sources"]
    assert sorted(x.name for x in (tmp_path / "b").iterdir()) == ["manifest.json", "passages.parquet", "redirects.tsv"]
    # an id repeated across files is refused as in a local build, naming the later file
    (tmp_path / "dup.jsonl").write_text(json.dumps({"id": "1-3", "title": "x", "text": "y z"}) + "\n")
    with pytest.raises(BadInputError, match="dup.jsonl.*'1-3'"):
        build_passages([*srcs, tmp_path / "dup.jsonl"], tmp_path / "c", engine=EngineConfig(shards=2))
    with pytest.raises(BadInputError, match="limit-docs"):
        build_passages(srcs, tmp_path / "d", engine=EngineConfig(shards=2), limit_docs=3)


def test_sharded_postings_equal_local(tmp_path):
    from rag.entities.lexicon_build import build_lexicon
    from rag.entities.linkers import LexiconLinker
    from rag.entities.postings import build_postings
    from tests.unit.entities_helpers import QUESTIONS, write_store

    store = write_store(tmp_path / "passages")
    linker = LexiconLinker(build_lexicon(tmp_path / "lex", passages=store, questions=QUESTIONS, case_sample=100))
    for unit in ("articles", "passages"):
        a = build_postings(store, linker, tmp_path / f"a-{unit}", unit=unit, workers=1)
        b = build_postings(store, linker, tmp_path / f"b-{unit}", unit=unit, engine=EngineConfig(shards=4))
        for name in ("indptr.npy", "docs.npy", "entities.txt") + (("doc_ids.txt",) if unit == "articles" else ()):
            assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes(), name
        assert a.manifest["fingerprint"] == b.manifest["fingerprint"]
        assert not (b.folder / "link").exists()


def test_missing_ray_names_the_extra(monkeypatch):
    import sys

    from rag.engine import engine_session
    from rag.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'rag\[ray\]'"):
        with engine_session(EngineConfig(kind="ray")):
            pass
    with engine_session(EngineConfig()):  # the local engine never needs it
        pass


def test_cli_engine_flags(tmp_path):
    pytest.importorskip("faiss")
    from click.testing import CliRunner

    from rag.cli import main
    from tests.unit.test_dense import make_store, synthetic_texts

    make_store(tmp_path / "p", synthetic_texts(120))
    r = CliRunner().invoke(main, ["index", "build", "--passages", str(tmp_path / "p"), "--kind", "dense", "--encoder", "hash:32",
                                  "--shards", "3", "--out", str(tmp_path / "d"), "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert len(m["shards"]) == 3 and m["engine"] == {"kind": "local", "address": None, "workers": None, "shards": 3}
    r = CliRunner().invoke(main, ["index", "build", "--passages", str(tmp_path / "p"), "--kind", "bm25", "--shards", "2",
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "apply to --kind dense" in r.output
    pytest.importorskip("ray")
    r = CliRunner().invoke(main, ["index", "build", "--passages", str(tmp_path / "p"), "--kind", "dense", "--encoder", "hash:32",
                                  "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "cannot reach the Ray cluster at 127.0.0.1:9" in r.output
    for cmd in (["corpus", "build"], ["counts", "postings"], ["counts", "build"], ["eval", "run"], ["index", "build"]):
        help_ = CliRunner().invoke(main, [*cmd, "--help"]).output
        assert "--exec-engine" in help_ and "--ray-address" in help_ and "--workers" in help_, cmd
