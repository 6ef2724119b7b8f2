"""DPR-style passages: consecutive, non-overlapping windows of `words` whitespace-separated words.

As in DPR (Karpukhin et al. 2020, psgs_w100.tsv): the text is split on any whitespace and each window is
re-joined with single spaces (line breaks are not kept); the last window of a document may be shorter
and is kept, however short; a document with no words gives no passage. Every passage carries its
document's title and the stable id f"{doc_id}#{position}", position counting windows from 0.

Cost: one str.split per document and one join per window; no per-word Python work.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from rag.errors import BadInputError
from rag.types import Document, Passage

DEFAULT_WORDS = 100


def check_words(words: int) -> int:
    if not isinstance(words, int) or isinstance(words, bool) or words < 1:
        raise BadInputError(f"passage size must be a positive number of words, got {words!r}")
    return words


def split_words(text: str, words: int = DEFAULT_WORDS) -> list[str]:
    """text -> [window text]: windows of `words` words, the last one possibly shorter."""
    toks = text.split()
    n = len(toks)
    if n <= words:
        return [" ".join(toks)] if n else []
    return [" ".join(toks[i : i + words]) for i in range(0, n, words)]


def chunk_document(doc: Document, words: int = DEFAULT_WORDS) -> list[Passage]:
    doc_id, title = doc.doc_id, doc.title
    return [
        Passage(pid=f"{doc_id}#{i}", doc_id=doc_id, title=title, text=t, position=i)
        for i, t in enumerate(split_words(doc.text, words))
    ]


def chunk_documents(docs: Iterable[Document], words: int = DEFAULT_WORDS) -> Iterator[Passage]:
    check_words(words)
    for doc in docs:
        yield from chunk_document(doc, words)
