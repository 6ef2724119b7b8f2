"""Documents that contain an exact phrase: the surface fallback of relevant-document counting.

Most long-tail subjects have no entity in the lexicon, so their question links nothing. Their count is still
computable from the text: the documents holding the exact subject phrase, intersected with the answer's
documents. Lookup goes through an index already built over the same passages, a BM25 index (bm25s engine):

    1. candidates: the passages holding every stem of the phrase (the BM25 tokenizer's stems; the stem x
       passage score matrix's column of a stem lists exactly those passages), rarest stem first;
    2. verify: the phrase occurs in the passage's indexed text (title + "\\n" + text) as a whole-word,
       case-sensitive match with any run of non-alphanumeric characters between its words ("Crow Harbour,
       New Brunswick" matches "Crow Harbour, New Brunswick" and "Crow Harbour New Brunswick", not "crow
       harbour"): one RE2 expression per phrase over the candidates' texts in Arrow, no Python loop over
       passages. Case is kept because a subject such as "Time to Come" is also a common phrase in lower case;
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

from rag.entities.postings import doc_of_row
from rag.errors import ArtifactError, BadInputError

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+")
_SEP = r"[^\pL\pN]"  # RE2: a character that is no letter or digit
_EMPTY = np.zeros(0, np.int64)
NO_STEMS = "no-searchable-words"
TAKE_ROWS = 200_000  # candidate passages whose texts are held at once


def phrase_pattern(phrase: str) -> str | None:
    """RE2 pattern of a phrase: its words in order, separated by non-alphanumerics, on word boundaries."""
    words = _WORD.findall(phrase)
    if not words:
        return None
    return f"(?:^|{_SEP})" + f"{_SEP}+".join(map(re.escape, words)) + f"(?:{_SEP}|$)"


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
        self.doc_of_row = doc_of_row(store, unit)  # numbered as the entity postings number documents
        self._title = store.table.column("title")
        self._text = store.table.column("text")

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

    def _texts(self, rows: np.ndarray):
        """Indexed texts (title + "\\n" + text) of the given rows, as one Arrow array (one take for many phrases)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        idx = pa.array(rows, pa.int64())
        return pc.binary_join_element_wise(pc.take(self._title, idx), pc.take(self._text, idx), "\n")

    def docs_batch(self, phrases: Sequence[str], within: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray | str]:
        """Sorted unique document numbers holding each phrase (restricted to the sorted document set `within[i]`
        when given), or NO_STEMS when the phrase has no searchable word."""
        import pyarrow.compute as pc

        within = within if within is not None else [None] * len(phrases)
        stems = self.tokenizer.tokenize_batch(list(phrases))
        cands: list[np.ndarray | None] = []
        patterns = []
        for phrase, st, w in zip(phrases, stems, within):
            rows = self._rows_with_stems(st)
            pattern = phrase_pattern(phrase)
            if rows is None or pattern is None:
                rows = None
            elif w is not None and len(rows):
                rows = rows[np.isin(self.doc_of_row[rows], w)]
            cands.append(rows)
            patterns.append(pattern)
        out: list[np.ndarray | str] = [NO_STEMS if c is None else _EMPTY for c in cands]
        todo = [i for i, c in enumerate(cands) if c is not None and len(c)]
        # candidates' texts are taken in groups of about TAKE_ROWS rows, then each phrase's slice is matched
        start = 0
        while start < len(todo):
            end, n = start, 0
            while end < len(todo) and (n == 0 or n + len(cands[todo[end]]) <= TAKE_ROWS):
                n += len(cands[todo[end]])
                end += 1
            group = todo[start:end]
            texts = self._texts(np.concatenate([cands[i] for i in group]))
            off = 0
            for i in group:
                rows = cands[i]
                hit = pc.match_substring_regex(texts.slice(off, len(rows)), patterns[i]).to_numpy(zero_copy_only=False)
                off += len(rows)
                h = rows[hit.astype(bool)]
                out[i] = np.unique(self.doc_of_row[h]) if len(h) else _EMPTY
            start = end
        return out
