"""The ray engine on a local 2-CPU Ray instance gives exactly what the local engine gives: passages, embeddings,
dense search, postings, eval predictions; a worker killed mid-run loses and duplicates nothing; an unreachable
cluster is a quick, clear error. One Ray session serves the module."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("faiss")

from rag.engine import EngineConfig  # noqa: E402
from rag.engine.shards import DONE  # noqa: E402
from rag.entities.linkers import LexiconLinker  # noqa: E402
from rag.errors import BadInputError, RagError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RAY2 = EngineConfig(kind="ray", workers=2)


def test_unreachable_cluster_fails_fast():
    from rag.engine.ray_engine import ClusterUnreachableError, check_reachable, ray_session

    t0 = time.perf_counter()
    with pytest.raises(ClusterUnreachableError, match="cannot reach the Ray cluster at 127.0.0.1:9.*ray start --head"):
        check_reachable("127.0.0.1:9", timeout=3)
    assert not ray.is_initialized()  # (runs before the module's Ray session starts)
    with pytest.raises(RagError, match="cannot reach"):
        with ray_session(EngineConfig(kind="ray", address="127.0.0.1:9", connect_timeout=2)):
            pass
    # an address that accepts the connection but is no Ray head (here, whatever answers for unroutable hosts)
    t1 = time.perf_counter()
    with pytest.raises(ClusterUnreachableError, match="10.255.255.1:6379"):
        with ray_session(EngineConfig(kind="ray", address="10.255.255.1:6379", connect_timeout=2)):
            pass
    assert time.perf_counter() - t1 < 8 and not ray.is_initialized()
    assert time.perf_counter() - t0 < 15


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU local Ray instance whose workers import this checkout's rag (and this test module, by its name)."""
    path = os.pathsep.join([str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_corpus_build_same_passages(ray_local, tmp_path, shared_data):
    from rag.corpus.build import build_passages
    from rag.corpus.store import PassageStore

    srcs = []
    for f in range(2):
        p = tmp_path / f"src{f}.jsonl"
        p.write_text("".join(json.dumps({"id": f"{f}-{i}", "title": f"T {i}", "text": " ".join(f"w{j}" for j in range(i * 11))}) + "\n"
                             for i in range(50)))
        srcs.append(p)
    srcs.append(shared_data / "wiki" / "enwiki-sample-pages-articles.xml.bz2")  # real wikitext, with redirects
    a = build_passages(srcs, tmp_path / "local")
    b = build_passages(srcs, tmp_path / "ray", engine=RAY2)
    assert a["fingerprint"] == b["fingerprint"] and a["n_passages"] == b["n_passages"] and b["engine"]["kind"] == "ray"
    assert PassageStore(tmp_path / "local").pids() == PassageStore(tmp_path / "ray").pids()
    assert (tmp_path / "local" / "redirects.tsv").read_bytes() == (tmp_path / "ray" / "redirects.tsv").read_bytes()


def test_dense_same_embeddings_and_search(ray_local, tmp_path):
    from rag.retrievers import load_index
    from rag.retrievers.dense import DenseRetriever
    from tests.unit.test_dense import make_store, synthetic_texts
    from tests.unit.test_engine import assert_same_up_to_ties

    store = make_store(tmp_path / "p", synthetic_texts(500))
    DenseRetriever.build(store, tmp_path / "local", encoder="hash:64", progress=False)
    DenseRetriever.build(store, tmp_path / "ray", encoder="hash:64", progress=False, engine=EngineConfig(kind="ray", workers=2, shards=4))
    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    np.testing.assert_allclose(a.embeddings(), b.embeddings(), atol=1e-6)
    assert len(b.manifest["shards"]) == 4 and b.manifest["engine"]["kind"] == "ray"
    assert len(b.manifest["build"]["shards"]["encode"]) == 4  # each shard encoded once (by whichever actor was free)
    q = a.embeddings()[:60]
    assert_same_up_to_ties(*a.search_vectors(q, 10), *b.search_vectors(q, 10))


MARK = "Zyzzyva"  # only in the last article, so only in the last shard


class KillingLinker(LexiconLinker):
    """Kills its worker process the first time it links the MARK text while the flag file exists
    (`fail="raise"`: raises a user error instead, which stops the build); logs one line per call to `calls`."""

    def __init__(self, lexicon, flag: Path, calls: Path, fail: str = "kill"):
        super().__init__(lexicon)
        self.flag, self.calls, self.fail = str(flag), str(calls), fail

    def link_entities(self, texts):
        marked = any(MARK in t for t in texts)
        killing = marked and os.path.exists(self.flag)
        with open(self.calls, "a") as f:  # "pid mark|- killed|-": which process linked what, and which died
            f.write(f"{os.getpid()} {'mark' if marked else '-'} {'killed' if killing else '-'}\n")
        if killing:
            if self.fail == "raise":
                raise BadInputError("simulated bad input in the last shard")
            os.remove(self.flag)
            os._exit(1)  # a hard kill: no exception, no cleanup, like OOM or a lost node
        return super().link_entities(texts)


@pytest.fixture(scope="module")
def linked_world(tmp_path_factory):
    from rag.entities.lexicon_build import build_lexicon
    from tests.unit.entities_helpers import DOCS, QUESTIONS, write_store

    root = tmp_path_factory.mktemp("linkworld")
    docs = {f"{k}-{r}": v for r in range(4) for k, v in DOCS.items()}  # 44 articles
    docs["zz"] = (MARK, [f"The {MARK} is a weevil found in Vienna."])
    store = write_store(root / "passages", docs=docs)
    lexicon = build_lexicon(root / "lex", passages=store, questions=QUESTIONS, case_sample=100)
    return store, lexicon


SAME = ("indptr.npy", "docs.npy", "entities.txt", "doc_ids.txt")


def test_postings_same_and_a_killed_worker_loses_nothing(ray_local, linked_world, tmp_path):
    from rag.entities.postings import build_postings

    store, lexicon = linked_world
    local = build_postings(store, LexiconLinker(lexicon), tmp_path / "local", workers=1)
    flag = tmp_path / "kill-once"
    flag.touch()
    linker = KillingLinker(lexicon, flag, tmp_path / "calls")
    assert linker.identity() == LexiconLinker(lexicon).identity()
    ray_p = build_postings(store, linker, tmp_path / "ray", engine=EngineConfig(kind="ray", workers=2, shards=6))
    assert not flag.exists()  # a worker did die mid-run, and its shard was redone by a restarted one
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    assert len(calls) == 7  # 6 shards + the killed attempt
    killed = [pid for pid, _, k in calls if k == "killed"]
    redone = [pid for pid, m, k in calls if m == "mark" and k == "-"]
    assert len(killed) == 1 and len(redone) == 1
    assert redone[0] != killed[0]  # the marked shard was redone by another (or a restarted) process
    assert killed[0] not in [pid for pid, _, _ in calls[calls.index([killed[0], "mark", "killed"]) + 1 :]]  # it died
    for name in SAME:
        assert (local.folder / name).read_bytes() == (ray_p.folder / name).read_bytes(), name
    assert ray_p.manifest["fingerprint"] == local.manifest["fingerprint"]
    assert ray_p.manifest["n_pairs"] == local.manifest["n_pairs"]  # nothing duplicated


def test_postings_resume_skips_done_shards(ray_local, linked_world, tmp_path):
    from rag.entities.postings import build_postings
    from rag.entities.postings import WORK

    store, lexicon = linked_world
    flag, calls = tmp_path / "fail", tmp_path / "calls"
    flag.touch()
    engine = EngineConfig(kind="ray", workers=2, shards=6)
    with pytest.raises(BadInputError, match="simulated bad input"):
        build_postings(store, KillingLinker(lexicon, flag, calls, fail="raise"), tmp_path / "p", engine=engine)
    done = json.loads((tmp_path / "p.partial" / WORK / DONE).read_text())["done"]
    assert "5" not in done and len(done) >= 1
    flag.unlink()
    calls.unlink()
    p = build_postings(store, KillingLinker(lexicon, flag, calls), tmp_path / "p", engine=engine)
    assert len(calls.read_text().splitlines()) == 6 - len(done)  # only the shards not done before
    local = build_postings(store, LexiconLinker(lexicon), tmp_path / "local", workers=1)
    for name in SAME:
        assert (local.folder / name).read_bytes() == (p.folder / name).read_bytes(), name


from rag.readers.fake import FakeReader  # noqa: E402
from tests.unit.test_eval_run import KNOWN, world, write_config  # noqa: E402,F401  (world: a fixture)


class KillingReader(FakeReader):
    """The fake reader, but the first batch asking about Croatia kills its actor while the flag file exists."""

    def __init__(self, flag: Path):
        super().__init__(known=KNOWN, name="fake")
        self.flag = str(flag)

    def generate_batch(self, prompts, max_new_tokens=16):
        if os.path.exists(self.flag) and any("capital of croatia" in p for p in prompts):
            os.remove(self.flag)
            os._exit(1)
        return super().generate_batch(prompts, max_new_tokens)


def test_eval_same_records_with_a_killed_reader_actor(ray_local, world, tmp_path):
    from rag.evaluation.config import load_config
    from rag.evaluation.records import RECORDS
    from rag.evaluation.runner import run_eval

    local = run_eval(load_config(write_config(world, tmp_path / "local")), progress=False, reader=FakeReader(known=KNOWN, name="fake"))
    flag = tmp_path / "kill-once"
    flag.touch()
    cfg = load_config(write_config(world, tmp_path / "ray", engine={"kind": "ray", "workers": 2}))
    res = run_eval(cfg, progress=False, reader=KillingReader(flag))
    assert not flag.exists() and res.computed == local.computed == {"closed": 12, "rag:bm25": 12}
    a = (local.folder / RECORDS).read_text().splitlines()
    b = (res.folder / RECORDS).read_text().splitlines()
    assert a == b  # same predictions, scores and passages, in the same order, none duplicated
    assert json.loads((res.folder / "manifest.json").read_text())["reader_info"]["class"] == "KillingReader"
    again = run_eval(cfg, progress=False, reader=FakeReader(known=KNOWN, name="fake"))  # resumes: nothing left to do
    assert again.computed == {} and again.reused == 24


@pytest.mark.slow
def test_real_minilm_same_embeddings(ray_local, shared_data, tmp_path):
    """The real encoder on ~200 real passages: two Ray actors (one model each) vs one local pass."""
    pytest.importorskip("sentence_transformers")
    from rag.corpus.build import build_passages
    from rag.corpus.store import PassageStore
    from rag.retrievers import load_index
    from rag.retrievers.dense import DenseRetriever

    build_passages(shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz", tmp_path / "p", limit_docs=60)
    store = PassageStore(tmp_path / "p")
    assert 150 <= len(store) <= 400
    # fp32: this compares the engines, and bf16 sums (the encoder's default where bf16 is fast) round differently
    # with other thread counts
    DenseRetriever.build(store, tmp_path / "local", progress=False, device="cpu", precision="fp32")
    DenseRetriever.build(store, tmp_path / "ray", progress=False, device="cpu", precision="fp32",
                         engine=EngineConfig(kind="ray", workers=2, shards=2))
    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    np.testing.assert_allclose(a.embeddings(), b.embeddings(), atol=1e-5)
    queries = ["who was editor in chief of vogue australia", "bridge built without expansion joints"]
    assert [[h.pid for h in hs] for hs in a.search_batch(queries, 5)] == [[h.pid for h in hs] for hs in b.search_batch(queries, 5)]


def test_cli_eval_run_on_ray(ray_local, world, tmp_path):
    from click.testing import CliRunner

    from rag.cli import main
    from rag.evaluation.records import RECORDS

    outs = {}
    for name, flags in (("local", []), ("ray", ["--exec-engine", "ray", "--workers", "2"])):
        cfg = write_config(world, tmp_path / name)
        r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress", *flags])
        assert r.exit_code == 0, r.output
        outs[name] = (tmp_path / name / RECORDS).read_text()
    assert outs["local"] == outs["ray"]
    import yaml

    assert yaml.safe_load((tmp_path / "ray" / "config.yaml").read_text())["engine"]["kind"] == "ray"


def test_counts_same_on_ray(ray_local, linked_world, tmp_path):
    from rag.entities.counting import build_counts
    from tests.unit.entities_helpers import QUESTIONS

    store, lexicon = linked_world
    rows = {}
    for name, engine in (("local", None), ("ray", EngineConfig(kind="ray", workers=2, shards=3))):
        rows[name], manifest = build_counts(store, QUESTIONS, tmp_path / name, lexicon=Path(store).parent / "lex", engine=engine)
    assert rows["local"] == rows["ray"] and any(r.count > 0 for r in rows["ray"])
