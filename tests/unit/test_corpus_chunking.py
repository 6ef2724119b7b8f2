"""DPR-style windows: sizes, edges, ids, and that no word is lost or reordered."""
from __future__ import annotations

import random

import pytest

from rag.corpus.chunking import chunk_document, chunk_documents, split_words
from rag.errors import BadInputError
from rag.types import Document, Passage


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


@pytest.mark.parametrize(
    "n, size, lengths",
    [(0, 100, []), (1, 100, [1]), (99, 100, [99]), (100, 100, [100]), (101, 100, [100, 1]), (200, 100, [100, 100]),
     (250, 100, [100, 100, 50]), (7, 3, [3, 3, 1]), (5, 1, [1, 1, 1, 1, 1])],
)
def test_window_sizes(n, size, lengths):
    assert [len(w.split()) for w in split_words(words(n), size)] == lengths


def test_exact_multiple_has_no_empty_tail():
    out = split_words(words(300), 100)
    assert out == [words(100), words(100, 100), words(100, 200)]


def test_whitespace_is_normalised_and_blank_text_gives_nothing():
    assert split_words("  a\tb\n\nc  d \u3000e\u00a0f ", 4) == ["a b c d", "e f"]
    assert split_words(" \n\t ", 100) == []
    assert split_words("", 100) == []


def test_unicode_words_are_kept_intact():
    text = "naïve café 東京都 Ελλάδα emoji🙂 Zürich–Genève"
    assert split_words(text, 2) == ["naïve café", "東京都 Ελλάδα", "emoji🙂 Zürich–Genève"]


def test_round_trip_on_random_texts():
    rng = random.Random(0)
    for _ in range(50):
        toks = ["".join(rng.choice("abcé東 ") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(0, 400))]
        text = rng.choice([" ", "\n", "  \t"]).join(toks)
        size = rng.randint(1, 120)
        out = split_words(text, size)
        assert " ".join(out).split() == text.split()
        assert all(len(w.split()) == size for w in out[:-1])
        assert not out or 1 <= len(out[-1].split()) <= size


def test_passages_carry_title_and_stable_ids():
    doc = Document("Q42", "Douglas Adams", words(230))
    ps = chunk_document(doc, 100)
    assert ps == [
        Passage("Q42#0", "Q42", "Douglas Adams", words(100), 0),
        Passage("Q42#1", "Q42", "Douglas Adams", words(100, 100), 1),
        Passage("Q42#2", "Q42", "Douglas Adams", words(30, 200), 2),
    ]


def test_chunk_documents_skips_empty_docs_and_checks_size():
    docs = [Document("a", "A", ""), Document("b", "B", "x y z")]
    assert [p.pid for p in chunk_documents(docs, 2)] == ["b#0", "b#1"]
    with pytest.raises(BadInputError, match="positive number of words"):
        list(chunk_documents(docs, 0))
