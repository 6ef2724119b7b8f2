"""Documents that contain an exact phrase: the surface fallback of relevant-document counting.

Most long-tail subjects have no entity in the lexicon, so their question links nothing. Their count is still
computable from the text: the documents holding the exact subject phrase, intersected with the answer's
documents. Lookup goes through an index already built over the same passages, a BM25 index (bm25s engine):

    1. candidates: the passages holding every stem of the phrase (the BM25 tokenizer's stems; the stem x
       passage score matrix's column of a stem lists exactly those passages), rarest stem first;
    2. verify: the phrase occurs in the passage's indexed text (title + "\\n" + text) as a whole-word,
       case-sensitive match after punctuation is folded to spaces ("Crow Harbour, New Brunswick" matches
       "Crow Harbour, New Brunswick" and "Crow Harbour New Brunswick", not "crow harbour"). Case is kept
       because a subject such as "Time to Come" is also a common phrase in lower case;
    3. documents: the verified passages' articles (or the passages themselves, for passage-level postings),
       numbered as the entity postings number them, so the two kinds of document sets intersect directly.

A phrase with no indexable stem (only stopwords) finds nothing; `PhraseDocs.docs_batch` says which.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.errors import ArtifactError, BadInputError

log = logging.getLogger(__name__)

_NON_WORD = re.compile(r"[\W_]+")
_EMPTY = np.zeros(0, np.int64)
NO_STEMS = "no-searchable-words"


def cased_key(s: str) -> str:
    """Punctuation and runs of spaces folded to one space, case kept: the form phrases are verified in."""
    return " ".join(_NON_WORD.sub(" ", s).split())


def doc_of_row(store, unit: str) -> np.ndarray:
    """Document number of every passage row, as the entity postings number documents (articles in order of
    first appearance; passages: the row itself)."""
    if unit == "passages":
        return np.arange(len(store), dtype=np.int64)
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(store.table.column("doc_id")).combine_chunks()
    return enc.indices.to_numpy().astype(np.int64)


class PhraseDocs:
    """Exact-phrase document lookup over a passage store through its BM25 index (module docstring)."""

    def __init__(self, store, index: str | Path, unit: str = "articles"):
        from rag.retrievers.base import load_index

        self.store = store
        self.folder = Path(index)
        retriever = load_index(self.folder, passages=store)
        engine = getattr(retriever, "engine", None)
        bm25 = getattr(engine, "bm25", None)
        if bm25 is None or getattr(bm25, "scores", None) is None:
            raise BadInputError(f"{self.folder} is not a BM25 index with the bm25s engine; the surface fallback reads its postings "
                                "(build one with `rag index build --kind bm25`)")
        if retriever.manifest["passages"]["fingerprint"] != store.fingerprint:
            raise ArtifactError(f"BM25 index {self.folder} was built over other passages than {store.folder}; rebuild it over these")
        self.manifest = retriever.manifest
        self.tokenizer = retriever.tokenizer
        self.indptr = np.asarray(bm25.scores["indptr"])
        self.indices = bm25.scores["indices"]
        self.vocab = bm25.vocab_dict
        self.unit = unit
        self.doc_of_row = doc_of_row(store, unit)
        self._texts: dict[int, str] = {}

    def identity(self) -> dict:
        return {"path": str(self.folder), "kind": "bm25", "fingerprint": self.manifest.get("fingerprint") or self.manifest["files"]}

    def _rows_with_stems(self, stems: Sequence[str]) -> np.ndarray | None:
        ids = []
        for t in dict.fromkeys(stems):
            i = self.vocab.get(t)
            if i is None:
                return _EMPTY  # a stem no passage holds
            ids.append(i)
        if not ids:
            return None
        ids.sort(key=lambda i: self.indptr[i + 1] - self.indptr[i])
        rows = np.asarray(self.indices[self.indptr[ids[0]] : self.indptr[ids[0] + 1]], np.int64)
        for i in ids[1:]:
            if not len(rows):
                break
            other = np.asarray(self.indices[self.indptr[i] : self.indptr[i + 1]], np.int64)
            rows = rows[np.isin(rows, other, assume_unique=True)]
        return np.sort(rows)

    def _read(self, rows: np.ndarray) -> None:
        from rag.corpus.store import passage_text

        need = [r for r in rows.tolist() if r not in self._texts]
        if not need:
            return
        t = self.store.table.take(need).select(["title", "text"]).to_pydict()
        for r, ti, tx in zip(need, t["title"], t["text"]):
            self._texts[r] = " " + cased_key(passage_text(ti, tx)) + " "

    def docs_batch(self, phrases: Sequence[str], within: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray | str]:
        """Sorted unique document numbers holding each phrase (restricted to the sorted document set `within[i]`
        when given), or NO_STEMS when the phrase has no searchable word."""
        within = within if within is not None else [None] * len(phrases)
        stems = self.tokenizer.tokenize_batch(list(phrases))
        cands: list[np.ndarray | None] = []
        for st, w in zip(stems, within):
            rows = self._rows_with_stems(st)
            if rows is not None and w is not None and len(rows):
                rows = rows[np.isin(self.doc_of_row[rows], w)]
            cands.append(rows)
        todo = [c for c in cands if c is not None and len(c)]
        if todo:
            self._read(np.unique(np.concatenate(todo)))
        out: list[np.ndarray | str] = []
        for phrase, rows in zip(phrases, cands):
            if rows is None:
                out.append(NO_STEMS)
                continue
            key = " " + cased_key(phrase) + " "
            if key.strip() == "":
                out.append(NO_STEMS)
                continue
            hit = [r for r in rows.tolist() if key in self._texts[r]]
            out.append(np.unique(self.doc_of_row[np.asarray(hit, np.int64)]) if hit else _EMPTY)
        if len(self._texts) > 2_000_000:  # bound the text cache on huge batches
            self._texts.clear()
        return out
