"""Counting semantics (Kandpal et al.), postings against brute force, artifacts and refusals."""
from __future__ import annotations

import random
import shutil
from collections import Counter

import numpy as np
import pytest

from rag.buckets import log10_edges
from rag.corpus.store import PassageStore
from rag.counts import A_UNLINKED, BOTH_UNLINKED, OK, Q_UNLINKED, load_counts, save_counts, summarize
from rag.entities.counting import build_counts, count_one, count_questions, select_entities
from rag.entities.lexicon_build import build_lexicon
from rag.entities.linkers import LexiconLinker
from rag.entities.postings import Postings, build_postings, intersect_count
from rag.errors import ArtifactError, BadInputError
from rag.types import Question
from tests.unit.entities_helpers import DOCS, QUESTIONS, tiny_store, write_store  # noqa: F401 (fixture)


# --- the reference semantics, written out with plain sets ----------------------------------------------


def reference_count(q_labels, a_labels, docs: dict[str, set], exclude=frozenset()):
    """Plain-set port of the counting rules (answer entities in Q dropped, ties kept, max over pairs)."""
    q = set(q_labels) - set(exclude)
    a_list = [a for a in a_labels if a not in q]
    counts = {a: a_list.count(a) for a in set(a_list)}
    tied = [a for a, c in counts.items() if c == max(counts.values())] if counts else []
    best = 0
    for a in tied:
        for e in q:
            best = max(best, len(docs.get(e, set()) & docs.get(a, set())))
    q_occ = max((len(docs.get(e, set())) for e in q), default=0)
    a_occ = max((len(docs.get(a, set())) for a in set(a_list)), default=0)
    return best, q_occ, a_occ


def test_select_entities_rules():
    q, a_all, tied = select_entities(["Paris", "France", "Paris"], ["France", "Eiffel", "Seine", "Eiffel", "Seine", "Tower"])
    assert q == ("Paris", "France")
    assert a_all == ("Eiffel", "Seine", "Tower")  # France dropped: it is a question entity
    assert tied == ("Eiffel", "Seine")  # both linked twice: all ties kept
    q, _, tied = select_entities(["France", "Eiffel Tower"], ["France"], exclude_countries=True)
    assert q == ("Eiffel Tower",) and tied == ("France",)  # the country is kept on the answer side, as in the paper
    assert select_entities([], []) == ((), (), ())


def test_count_one_matches_reference_on_random_cases():
    rng = random.Random(0)
    ents = [f"E{i}" for i in range(12)]
    for _ in range(300):
        docs = {e: set(rng.sample(range(60), rng.randint(0, 30))) for e in ents if rng.random() < 0.9}
        ql = rng.choices(ents, k=rng.randint(0, 4))
        al = rng.choices(ents, k=rng.randint(0, 6))
        q, a_all, tied = select_entities(ql, al)
        arrays = {e: np.array(sorted(s), dtype=np.int32) for e, s in docs.items()}
        count, qe, ae, q_occ, a_occ = count_one(q, a_all, tied, lambda e: arrays.get(e, np.zeros(0, np.int32)))
        assert (count, q_occ, a_occ) == reference_count(ql, al, docs)
        if q and tied:
            assert qe in q and ae in tied
            assert len(docs.get(qe, set()) & docs.get(ae, set())) == count
        else:
            assert qe is None and ae is None and count == 0


def test_intersect_count():
    a = np.array([1, 3, 5, 7, 9], np.int32)
    assert intersect_count(a, np.array([0, 3, 4, 9, 12], np.int32)) == 2
    assert intersect_count(a, np.zeros(0, np.int32)) == 0
    assert intersect_count(np.array([10], np.int32), a) == 0


# --- postings on the tiny corpus --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lexicon(tiny_store, tmp_path_factory):
    return build_lexicon(tmp_path_factory.mktemp("lex") / "lex", passages=tiny_store, questions=QUESTIONS, case_sample=100)


@pytest.fixture(scope="module")
def linker(lexicon):
    return LexiconLinker(lexicon)


@pytest.fixture(scope="module")
def postings(tiny_store, linker, tmp_path_factory):
    return build_postings(tiny_store, linker, tmp_path_factory.mktemp("post") / "articles", workers=1)


def brute_force_docs(store: PassageStore, linker, unit: str) -> dict[str, set]:
    """entity -> set of documents, from per-passage Mention lists (the public link_batch path)."""
    rows = store.get_rows(range(len(store)))
    out: dict[str, set] = {}
    for row, (p, mentions) in enumerate(zip(rows, linker.link_batch([p.text for p in rows]))):
        doc = p.doc_id if unit == "articles" else row
        for e in [m.entity for m in mentions] + ([p.title] if linker.lexicon.entity_id(p.title) is not None else []):
            label = linker.vocabulary[linker.lexicon.entity_id(e)] if e == p.title else e
            out.setdefault(label, set()).add(doc)
    return out


def postings_as_sets(p: Postings) -> dict[str, set]:
    ids = p.doc_ids() if p.unit == "articles" else None
    out = {}
    for i, label in enumerate(p.labels):
        docs = p.docs[p.indptr[i] : p.indptr[i + 1]]
        assert np.all(np.diff(docs) > 0)  # sorted, unique
        out[label] = {ids[d] for d in docs} if ids else set(docs.tolist())
    return out


def test_postings_equal_brute_force(tiny_store, linker, postings):
    store = PassageStore(tiny_store)
    assert postings_as_sets(postings) == brute_force_docs(store, linker, "articles")
    assert postings.n_docs == len(DOCS)
    assert postings.docs_of("Wolfgang Amadeus Mozart").size >= 4
    assert postings.doc_count("no such entity") == 0 and postings.docs_of("no such entity").size == 0
    m = postings.manifest
    assert m["passages"]["fingerprint"] == store.fingerprint and m["linker"] == linker.identity()


def test_postings_passages_unit_spill_and_workers(tiny_store, linker, tmp_path):
    store = PassageStore(tiny_store)
    one = build_postings(store, linker, tmp_path / "p1", unit="passages", workers=1)
    assert postings_as_sets(one) == brute_force_docs(store, linker, "passages")
    # tiny spill budget: every row group becomes a run on disk, merged by entity range
    many = build_postings(store, linker, tmp_path / "p2", unit="passages", workers=2, spill_pairs=5)
    assert many.manifest["n_runs"] >= 1
    assert np.array_equal(np.asarray(one.indptr), np.asarray(many.indptr)) and np.array_equal(np.asarray(one.docs), np.asarray(many.docs))
    assert not list((tmp_path / "p2").glob("run-*"))


def test_spill_merge_across_row_groups(tmp_path, linker):
    # several parquet row groups and forked workers, spilled and merged, equal one in-memory pass
    docs = {str(i): (t, texts) for i, (t, texts) in enumerate(list(DOCS.values()) * 3)}
    folder = tmp_path / "big"
    from rag.artifacts import atomic_dir
    from rag.corpus.store import PassageWriter
    from rag.types import Passage

    with atomic_dir(folder) as tmp:
        w = PassageWriter(tmp, row_group=4)
        for doc_id, (title, texts) in docs.items():
            w.add(Passage(f"{doc_id}#{i}", doc_id, title, t, i) for i, t in enumerate(texts))
        w.close()
    a = build_postings(folder, linker, tmp_path / "a", workers=1)
    b = build_postings(folder, linker, tmp_path / "b", workers=2, spill_pairs=3)
    assert b.manifest["n_runs"] > 1 and b.manifest["workers"] == 2
    assert postings_as_sets(a) == postings_as_sets(b)


def test_postings_refusals(tiny_store, linker, postings, tmp_path, lexicon):
    with pytest.raises(ArtifactError, match="do not exist"):
        Postings(tmp_path / "nope")
    other = write_store(tmp_path / "other", docs={"1": ("Vienna", ["Vienna and Salzburg."])})
    with pytest.raises(ArtifactError, match="rebuild them over these passages"):
        Postings.open(postings.folder, store=PassageStore(other))
    with pytest.raises(ArtifactError, match="were linked with"):
        Postings.open(postings.folder, linker=LexiconLinker(lexicon, threshold=0.9))
    bad = tmp_path / "trunc"
    shutil.copytree(postings.folder, bad)
    with open(bad / "docs.npy", "ab") as f:
        f.write(b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="truncated"):
        Postings(bad)
    with pytest.raises(BadInputError, match="document unit"):
        build_postings(tiny_store, linker, tmp_path / "x", unit="sentences")
    with pytest.raises(BadInputError, match="workers"):
        build_postings(tiny_store, linker, tmp_path / "y", workers=0)


# --- counting on the tiny corpus --------------------------------------------------------------------------


def test_count_questions_statuses_and_values(linker, postings):
    rows = count_questions(QUESTIONS, linker, postings)
    by = {r.qid: r for r in rows}
    assert len(rows) == len(QUESTIONS)  # nothing dropped
    r = by["t-0"]  # where was mozart born -> Salzburg
    assert r.status == OK and r.q_entity == "Wolfgang Amadeus Mozart" and r.a_entity == "Salzburg"
    sets = postings_as_sets(postings)
    # hand-checked: the Mozart article names Salzburg, the Salzburg article names Mozart ("Austria" names only Salzburg)
    assert sets["Wolfgang Amadeus Mozart"] & sets["Salzburg"] == {"1", "2"} and r.count == 2
    assert r.q_entity_docs == len(sets["Wolfgang Amadeus Mozart"]) and r.a_entity_docs == len(sets["Salzburg"])
    # answers "Dante Alighieri" and "Dante" both link Dante; the divine comedy is the question entity
    r = by["t-2"]
    assert r.a_entities == ("Dante Alighieri",) and r.q_entity == "Divine Comedy" and r.count >= 2
    assert by["t-4"].status == BOTH_UNLINKED and by["t-4"].count == 0  # no entities anywhere
    assert by["t-5"].status == A_UNLINKED and by["t-5"].answers == ()  # empty answer list: kept, labelled
    for r in rows:
        if r.status == OK:
            best, q_occ, a_occ = reference_count(r.q_entities, list(r.a_entities), sets)
            assert r.count == best and r.q_occurrence == q_occ


def test_question_unlinked_and_bad_questions(linker, postings):
    rows = count_questions([Question("x", "what is it", ("Vienna",))], linker, postings)
    assert rows[0].status == Q_UNLINKED and rows[0].a_entities == ("Vienna",)
    with pytest.raises(BadInputError, match="empty question"):
        count_questions([Question("x", "  ", ("Vienna",))], linker, postings)
    with pytest.raises(BadInputError, match="answers must be"):
        count_questions([Question("x", "where", "Vienna")], linker, postings)


def test_exclude_countries(linker, postings):
    q = [Question("c", "which city of austria did mozart live in", ("Vienna",))]
    with_c = count_questions(q, linker, postings)[0]
    without = count_questions(q, linker, postings, exclude_countries=True)[0]
    assert "Austria" in with_c.q_entities and "Austria" not in without.q_entities
    assert without.q_entities == ("Wolfgang Amadeus Mozart",)


def test_counts_artifact_roundtrip_and_summary(linker, postings, tmp_path):
    rows = count_questions(QUESTIONS, linker, postings)
    m = save_counts(rows, tmp_path / "c", note="x")
    back, manifest = load_counts(tmp_path / "c")
    assert back == rows and manifest["note"] == "x"
    s = summarize(rows)
    assert s["n_questions"] == len(rows) and sum(s["status"].values()) == len(rows)
    assert sum(s["buckets"].values()) == len(rows) and s["buckets"]["unlinked"] == sum(r.status != OK for r in rows)
    assert s["fraction_unlinked"] == pytest.approx(s["buckets"]["unlinked"] / len(rows), abs=1e-4)
    assert m["summary"]["status"] == s["status"]
    assert log10_edges(0) == (0, 1) and log10_edges(999) == (0, 1, 10, 100) and log10_edges(1000) == (0, 1, 10, 100, 1000)
    with pytest.raises(ArtifactError, match="do not exist"):
        load_counts(tmp_path / "none")


def test_summary_counts_top_entities():
    from rag.counts import QuestionCount

    rows = [QuestionCount(str(i), "q", ("a",), "Q", "A" if i % 2 else "B", i * 7, 5, 5, OK) for i in range(10)]
    s = summarize(rows, top=2)
    assert s["top_answer_entities"][0][1] == 5 and s["buckets"]["0"] == 1 and s["buckets"][">=10"] == 8
    assert Counter(r.a_entity for r in rows)["A"] == 5



class WordLinker:
    """A linker without a fixed vocabulary (like Spotlight): every capitalized word is an entity."""

    name = "words"
    vocabulary = None

    def link_batch(self, texts):
        import re

        from rag.types import Mention

        return [[Mention(m.start(), m.end(), m.group(), m.group()) for m in re.finditer(r"\b[A-Z][a-z]+\b", t)] for t in texts]

    def link_entities(self, texts):
        from rag.entities.linkers import EntityLinker

        return EntityLinker.link_entities(self, texts)

    def identity(self):
        return {"name": self.name}


def test_postings_with_a_label_linker(tiny_store, tmp_path):
    store = PassageStore(tiny_store)
    lk = WordLinker()
    p = build_postings(store, lk, tmp_path / "w", workers=2, spill_pairs=4)
    want: dict[str, set] = {}
    for row in store.get_rows(range(len(store))):
        for e in [m.entity for m in lk.link(row.text)] if hasattr(lk, "link") else [m.entity for m in lk.link_batch([row.text])[0]]:
            want.setdefault(e, set()).add(row.doc_id)
        want.setdefault(row.title, set()).add(row.doc_id)  # titles name their article
    assert postings_as_sets(p) == want
    rows = count_questions([Question("w", "Where was Mozart born?", ("Salzburg",))], lk, p)
    assert rows[0].q_entities == ("Where", "Mozart") and rows[0].count == len(want["Mozart"] & want["Salzburg"])


# --- surface fallback, count methods, format 1 ------------------------------------------------------------


SURFACE_DOCS = {
    "a": ("Fishing towns", ["Crow Harbour, New Brunswick is a fishing village in Canada. Its boats land cod.",
                             "Crow Harbour, New Brunswick lies on the Bay of Fundy."]),
    "b": ("Canada", ["Canada is a country. New Brunswick is a province of Canada."]),
    "c": ("Bay of Fundy", ["The Bay of Fundy has high tides. Crow Harbour is not mentioned in full here."]),
    "d": ("New Brunswick", ["New Brunswick borders the Bay of Fundy and Quebec."]),
}


@pytest.fixture(scope="module")
def surface_world(tmp_path_factory):
    from rag.entities.surface import PhraseDocs
    from rag.retrievers.bm25 import BM25Retriever

    root = tmp_path_factory.mktemp("surface")
    store_dir = write_store(root / "passages", docs=SURFACE_DOCS, redirects=[("Harbour", "Fishing towns")])
    store = PassageStore(store_dir)
    qs = [Question("s-0", "Which country is Crow Harbour, New Brunswick located in?", ("Canada",)),
          Question("s-1", "What does Crow Harbour, New Brunswick land?", ("cod",)),
          Question("s-2", "Where is Xyzzy Quux located?", ("Canada",)),
          Question("s-3", "where is it?", ("Canada",)),
          Question("s-4", "Which bay is New Brunswick on?", ("Bay of Fundy",)),
          Question("s-5", "Which country is Crow Harbour, New Brunswick located in?", ())]
    lex = build_lexicon(root / "lex", passages=store_dir, questions=qs, case_sample=100)
    lk = LexiconLinker(lex)
    post = build_postings(store, lk, root / "post", workers=1)
    BM25Retriever.build(store, root / "bm25", progress=False)
    return {"store": store, "linker": lk, "postings": post, "phrases": PhraseDocs(store, root / "bm25"), "questions": qs, "root": root}


def test_surface_fallback_counts(surface_world):
    from rag.counts import ENTITY, NONE, SURFACE

    w = surface_world
    rows = count_questions(w["questions"], w["linker"], w["postings"], phrases=w["phrases"])
    by = {r.qid: r for r in rows}
    ids = w["postings"].doc_ids()
    a = ids.index("a")
    # no entity for the subject ("Harbour" and "New Brunswick" are parts of one name): the exact phrase is
    # in document a only, which also links Canada
    r = by["s-0"]
    assert (r.method, r.q_source, r.a_source) == (SURFACE, SURFACE, ENTITY)
    assert r.q_entity == r.q_mention == "Crow Harbour, New Brunswick" and r.a_entity == "Canada"
    assert r.count == 1 and r.q_entity_docs == 1 and r.status == OK
    assert w["phrases"].docs_batch(["Crow Harbour, New Brunswick"])[0].tolist() == [a]
    # the answer is no entity: documents holding the string "cod" among the subject's documents
    r = by["s-1"]
    assert (r.method, r.q_source, r.a_source, r.count, r.a_entity) == (SURFACE, SURFACE, SURFACE, 1, "cod")
    # a phrase found nowhere is a count of 0, not an unlinked question
    r = by["s-2"]
    assert (r.method, r.q_source, r.count, r.status) == (SURFACE, SURFACE, 0, OK)
    # no name span at all (an uncased question): unlinked, and the row says why
    r = by["s-3"]
    assert (r.method, r.status) == (NONE, "question-unlinked") and r.why == "no name span in the question"
    # both sides entities: exactly the paper's count
    r = by["s-4"]
    assert (r.method, r.q_entity, r.a_entity) == (ENTITY, "New Brunswick", "Bay of Fundy")
    assert r.count == intersect_count(w["postings"].docs_of("New Brunswick"), w["postings"].docs_of("Bay of Fundy"))
    assert by["s-5"].why == "no answers" and by["s-5"].status == "answer-unlinked"
    # without the phrase lookup nothing is counted from text
    plain = {r.qid: r for r in count_questions(w["questions"], w["linker"], w["postings"])}
    assert plain["s-0"].method == NONE and plain["s-0"].why == "no question entity (no phrase lookup)"
    assert plain["s-4"] == r


def test_summary_and_show_split_by_method(surface_world, tmp_path):
    from click.testing import CliRunner

    from rag.cli import main

    w = surface_world
    rows = count_questions(w["questions"], w["linker"], w["postings"], phrases=w["phrases"])
    s = summarize(rows)
    assert s["method"] == {"entity": 1, "surface": 3, "none": 2}
    assert s["buckets_by_method"][">=1"] == {"entity": 1, "surface": 2} and s["buckets_by_method"]["0"] == {"surface": 1}
    assert s["top_subject_phrases"][0] == ("Crow Harbour, New Brunswick", 2)
    save_counts(rows, tmp_path / "c")
    out = CliRunner().invoke(main, ["counts", "show", str(tmp_path / "c")]).output
    assert "entity      1  surface      2" in out and "top subject phrases: Crow Harbour, New Brunswick (2)" in out


def test_counts_build_with_surface_index_and_frames(surface_world, tmp_path):
    w = surface_world
    rows, manifest = build_counts(w["store"].folder, w["questions"], tmp_path / "counts", lexicon=w["root"] / "lex",
                                  postings=w["root"] / "post", phrase_index=w["root"] / "bm25")
    assert manifest["format"] == 2 and manifest["surface_fallback"]["kind"] == "bm25"
    assert manifest["frames"]["applies"] is False  # six questions of no common template
    back, _ = load_counts(tmp_path / "counts")
    assert back == rows


def test_phrase_lookup_refuses_another_store(surface_world, tiny_store):
    from rag.entities.surface import PhraseDocs

    with pytest.raises(ArtifactError, match="other passages|built from"):
        PhraseDocs(PassageStore(tiny_store), surface_world["root"] / "bm25")


def test_format_1_counts_are_still_read(tmp_path, linker, postings):
    """A counts folder written before the surface fallback (format 1, no method columns) loads with methods."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rag.artifacts import file_sizes, write_manifest

    rows = count_questions(QUESTIONS, linker, postings)
    old_cols = ["qid", "question", "answers", "q_entity", "a_entity", "count", "q_entity_docs", "a_entity_docs", "status",
                "q_entities", "a_entities", "q_occurrence", "a_occurrence"]
    folder = tmp_path / "old"
    folder.mkdir()
    pq.write_table(pa.table({c: [list(v) if isinstance(v, tuple) else v for v in (getattr(r, c) for r in rows)] for c in old_cols}),
                   folder / "counts.parquet")
    write_manifest(folder, kind="counts", format=1, files=file_sizes(folder, ["counts.parquet"]))
    back, _ = load_counts(folder)
    assert [(r.qid, r.count, r.status) for r in back] == [(r.qid, r.count, r.status) for r in rows]
    assert [r.method for r in back] == [r.method for r in rows]
    assert {r.method for r in back} == {"entity", "none"}


def test_regex_golds_link_their_literal_aliases(tiny_store, tmp_path):
    """CuratedTREC-style golds: a plain alternation links as its literals; any other pattern is answer-unlinked."""
    from rag.regex_golds import NOT_LITERAL

    meta = {"match_type": "regex"}
    qs = [Question("r-0", "where was mozart born", (r"Salzburg|Salzburg,\s*Austria",), dict(meta)),
          Question("r-1", "where was mozart born", (r"\bSalzburg\b|Wien",), dict(meta)),
          Question("r-2", "where did beethoven move to", (r"Vien+a",), dict(meta))]
    lex = build_lexicon(tmp_path / "lex", passages=tiny_store, questions=qs, case_sample=100)
    # no lexicon alias is made of a pattern's text
    assert not lex.candidates("salzburg s austria") and not lex.candidates("vien a")
    lk = LexiconLinker(lex)
    post = build_postings(tiny_store, lk, tmp_path / "post", workers=1)
    rows = {r.qid: r for r in count_questions(qs, lk, post)}
    assert rows["r-0"].status == A_UNLINKED and rows["r-0"].why == NOT_LITERAL  # "\s*" makes the pattern non-literal
    assert (rows["r-1"].q_entity, rows["r-1"].a_entity, rows["r-1"].status) == ("Wolfgang Amadeus Mozart", "Salzburg", OK)
    assert rows["r-1"].answers == (r"\bSalzburg\b|Wien",)  # the row keeps the patterns themselves
    assert rows["r-2"].status == A_UNLINKED and rows["r-2"].why == NOT_LITERAL
