"""Extractive compression (rag.readers.compress) and its use in prompts and evaluation configs."""
from __future__ import annotations

import pytest

from rag.errors import BadInputError
from rag.readers.compress import select_batch, select_sentences, split_sentences
from rag.tokenize import DocFreq, Tokenizer
from rag.types import Passage

# the world's failure case: another subject's statement of the same relation next to the gold one
P1 = Passage("w1#0", "w1", "Braesan Guild", "Q: Who founded Braesan Guild? A: Qaereses Brysteikrux. Braesan Guild is old.")
P2 = Passage("w2#0", "w2", "Xybrond Guild",
             "Q: Who founded Xybrond Guild? A: Nylaethound Rykoqel. Bozhylourk was born in Laeveirk. "
             "The employer of Draxykrun was Braesan Guild.")
P3 = Passage("w3#0", "w3", "Stidraem", "Stidraem is a city. It lies in Grouzha.")


def test_split_keeps_a_question_with_its_answer():
    assert split_sentences("Q: Who founded X? A: Y Z. He was born in W!  Was he? Yes.") == [
        "Q: Who founded X? A: Y Z.", "He was born in W!", "Was he?", "Yes."]
    assert split_sentences("A was born in B. Q: Who founded X? A: Y Q: Where is X? A: Z") == [
        "A was born in B.", "Q: Who founded X? A: Y", "Q: Where is X? A: Z"]
    assert split_sentences("  ") == []


# corpus statistics as a BM25 index gives them: the subject's name is rare, relation words are common
CORPUS_DF = {"who": 9000, "braesan": 40, "guild": 2000, "found": 3000, "employ": 2500}
DF = DocFreq(100_000, lambda stems: [CORPUS_DF.get(t, 0) for t in stems], Tokenizer())


def test_the_rare_name_outweighs_shared_relation_words():
    (only,) = select_sentences("Who founded Braesan Guild?", [P1, P2, P3], 1, DF)
    assert only.pid == "w1#0" and only.title == "Braesan Guild" and only.text == "Q: Who founded Braesan Guild? A: Qaereses Brysteikrux."
    kept = select_sentences("Who founded Braesan Guild?", [P1, P2, P3], 3, DF)
    # rank order of passages and text order inside each; a passage left empty is dropped
    assert [p.pid for p in kept] == ["w1#0", "w2#0"]
    assert kept[0].text == P1.text
    assert kept[1].text == "The employer of Draxykrun was Braesan Guild."
    # without corpus statistics the name is in most candidates and the other subject's founder wins a place
    alone = select_sentences("Who founded Braesan Guild?", [P1, P2, P3], 3)
    assert "Nylaethound" in " ".join(p.text for p in alone)
    assert select_batch(["Who founded Braesan Guild?", "x"], [[P1, P2, P3], []], 3, DF) == [kept, []]


def test_sentences_without_overlap_fill_the_budget_best_ranked_first():
    kept = select_sentences("Where is Nowhere?", [P3, P1], 2)
    assert [p.pid for p in kept] == ["w3#0"] and kept[0].text == P3.text


def test_few_sentences_are_kept_whole_and_bad_n_is_refused():
    assert select_sentences("anything", [P3], 5) == [P3]
    with pytest.raises(BadInputError, match="must be positive"):
        select_sentences("q", [P3], 0)


def test_bm25_index_gives_corpus_document_frequencies(tmp_path):
    from rag.artifacts import atomic_dir
    from rag.corpus.store import PassageStore, PassageWriter
    from rag.retrievers import load_index
    from rag.retrievers.bm25 import BM25Retriever
    from rag.retrievers.hybrid import HybridRetriever

    with atomic_dir(tmp_path / "passages") as tmp:
        w = PassageWriter(tmp)
        w.add([P1, P2, P3])
        w.close()
    store = PassageStore(tmp_path / "passages")
    BM25Retriever.build(store, tmp_path / "bm25", progress=False)
    BM25Retriever.build(store, tmp_path / "ref", progress=False, engine="rank-bm25", variant="okapi")
    df = load_index(tmp_path / "bm25").doc_freq()
    assert df.n_docs == 3
    assert df.lookup(["braesan", "found", "stidraem", "nowhere"]) == [2, 2, 1, 0]  # titles are not indexed text
    assert load_index(tmp_path / "ref").doc_freq() is None  # the reference engine keeps no such statistic
    HybridRetriever.build(store, tmp_path / "hyb", members=[tmp_path / "ref", tmp_path / "bm25"])
    assert load_index(tmp_path / "hyb").doc_freq().lookup(["guild"]) == [2]


def test_demonstrations_are_narrowed_like_the_questions_passages():
    from rag.readers.compress import select_demos
    from rag.readers.prompts import Demo

    long = Passage("d#0", "d", "Kraeg Guild", "Kraeg Guild is in Traexubrer. Kraeg Guild was founded by Touzhum Xagrakri.")
    demos = [Demo("Who founded Kraeg Guild?", "Touzhum Xagrakri", long), Demo("q", "a")]
    (narrow, bare) = select_demos(demos, 1, DF)
    assert narrow.passage.pid == "d#0" and narrow.passage.text == "Kraeg Guild was founded by Touzhum Xagrakri."
    assert bare == demos[1]
