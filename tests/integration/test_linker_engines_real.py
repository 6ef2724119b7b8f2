"""The ngram-hash engine (default) gives exactly the matches of the ahocorasick-rs automaton on real text.

Real slice: 2,000 articles of the 2021 Wikipedia extract and the first 300,000 DBpedia surface forms (plus
the slice's titles), so the lexicon holds hundreds of thousands of multi-word forms with shared prefixes.
Compared: mentions (offsets, entities, scores), link_entities, case statistics, and whole postings.
"""
from __future__ import annotations

import itertools
import lzma

import numpy as np
import pytest

from rag.corpus.build import build_passages
from rag.corpus.store import PassageStore
from rag.entities.lexicon_build import build_lexicon
from rag.entities.linkers import LexiconLinker
from rag.entities.postings import build_postings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_ARTICLES = 2000
N_FORMS = 300_000
# edge cases the corpus may lack: NULs and control characters inside texts, line breaks in names, upper-case
# short forms, non-ASCII, sentence-initial common words, an empty text
ODD = ["", "\x00New York\x00 City", "NEW YORK CITY, US, usa", "New\nYork City", "the U.S. and the US\r\nUS",
       "École Normale Supérieure; ÉCOLE", "İstanbul and ǅemal", "The Moon. the moon, Moon", "a\x01b c\x02d", "x" * 5000]


@pytest.fixture(scope="module")
def world(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engines_real")
    src = shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz"
    with lzma.open(src, "rt", encoding="utf-8") as f, open(tmp / "w.jsonl", "w", encoding="utf-8") as out:
        out.writelines(itertools.islice(f, N_ARTICLES))
    build_passages([tmp / "w.jsonl"], tmp / "passages")
    with lzma.open(shared_data / "entities" / "dbpedia-surface-forms.tsv.xz", "rt", encoding="utf-8") as f, \
            open(tmp / "dbpedia.tsv", "w", encoding="utf-8") as out:
        out.writelines(itertools.islice(f, N_FORMS))
    store = PassageStore(tmp / "passages")
    lex = build_lexicon(tmp / "lexicon", passages=store.folder, surface_forms=[tmp / "dbpedia.tsv"], case_sample=5000)
    texts = [t for _, cols in store.iter_batches(batch_size=5000, columns=("text",)) for t in cols["text"]]
    return {"tmp": tmp, "store": store, "lex": lex, "texts": texts + ODD,
            "fast": LexiconLinker(lex, engine="ngram-hash"), "ref": LexiconLinker(lex, engine="ahocorasick-rs")}


def test_default_engine_is_ngram_hash(world):
    assert LexiconLinker(world["lex"]).engine == "ngram-hash"


def test_same_mentions(world):
    texts = world["texts"]
    got, want = world["fast"].link_batch(texts), world["ref"].link_batch(texts)
    # a real workload: several mentions per passage (~2.3 here with the name-span rule, ~3.3 without)
    assert sum(map(len, want)) > 2 * len(texts)
    assert got == want
    flat = {k: LexiconLinker(world["lex"], engine=e, name_spans=False) for k, e in (("fast", "ngram-hash"), ("ref", "ahocorasick-rs"))}
    assert flat["fast"].link_batch(texts) == flat["ref"].link_batch(texts)  # both engines agree without the rule too


def test_same_entities_and_case_stats(world):
    texts = world["texts"]
    for a, b in zip(world["fast"].link_entities(texts), world["ref"].link_entities(texts)):
        assert np.array_equal(a, b)
    for a, b in zip(world["fast"].case_stats(texts), world["ref"].case_stats(texts)):
        assert np.array_equal(a, b)


def test_same_postings(world):
    tmp, store = world["tmp"], world["store"]
    fast = build_postings(store, world["fast"], tmp / "p-fast", workers=1)
    ref = build_postings(store, world["ref"], tmp / "p-ref", workers=1)
    assert fast.manifest["n_pairs"] > 10_000
    assert np.array_equal(fast.indptr, ref.indptr) and np.array_equal(fast.docs, ref.docs)
    assert fast.labels == ref.labels
