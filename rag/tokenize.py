"""The one lexical tokenizer every BM25 engine uses: lower-case, regex words, stopwords out, Snowball stems.

It reproduces `bm25s.tokenize(texts, lower=True, stopwords="en", stemmer=Stemmer.Stemmer("english"))`
(scikit-learn's word pattern, stopwords removed before stemming), so indexes built by either engine see
identical tokens. `spec()` goes into every index manifest and `Tokenizer.from_spec` refuses a spec this
version cannot reproduce.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from rag.errors import ArtifactError, BadInputError

NAME = "regex-lower-stopwords-snowball"
VERSION = 1
PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn CountVectorizer / bm25s default: words of 2+ word characters


def _stopwords(language: str) -> tuple[str, ...]:
    if language in ("", "none"):
        return ()
    if language not in ("en", "english"):
        raise BadInputError(f"no stopword list for {language!r}; use 'en' or 'none'")
    from bm25s.stopwords import STOPWORDS_EN

    return tuple(STOPWORDS_EN)


class Tokenizer:
    """text -> stems. `encode_batch` maps texts to integer token ids through a growing `vocab`."""

    # word -> stem cache entries kept before the cache is cleared (bounds memory on huge corpora)
    CACHE_LIMIT = 2_000_000

    def __init__(self, stopwords: str = "en", stemmer: str = "english", pattern: str = PATTERN):
        self.stopwords_name = stopwords
        self.stemmer_name = stemmer
        self.pattern = pattern
        self._split = re.compile(pattern).findall
        self._stop = frozenset(_stopwords(stopwords))
        if stemmer in ("", "none"):
            self._stem_words = lambda words: list(words)
        else:
            import Stemmer  # PyStemmer, a core dependency
            if stemmer not in Stemmer.algorithms():
                raise BadInputError(f"PyStemmer has no {stemmer!r} stemmer; choose one of: {', '.join(Stemmer.algorithms())}")
            self._stem_words = Stemmer.Stemmer(stemmer).stemWords
        self._stem_cache: dict[str, str] = {}  # lower-cased word -> stem ("" for a stopword)

    def spec(self) -> dict:
        """What a manifest records so the same tokenization can be rebuilt (and checked) at query time."""
        from importlib import metadata

        words = sorted(self._stop)
        return {
            "name": NAME,
            "version": VERSION,
            "lowercase": True,
            "pattern": self.pattern,
            "stopwords": self.stopwords_name,
            "n_stopwords": len(words),
            "stopwords_sha256": hashlib.sha256("\n".join(words).encode()).hexdigest()[:16],
            "stemmer": self.stemmer_name,
            "stemmer_library": f"PyStemmer {metadata.version('PyStemmer')}" if self.stemmer_name not in ("", "none") else None,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> "Tokenizer":
        if spec.get("name") != NAME or spec.get("version") != VERSION:
            raise ArtifactError(
                f"index tokenizer {spec.get('name')!r} v{spec.get('version')} is not {NAME!r} v{VERSION}; rebuild the index"
            )
        tok = cls(stopwords=spec["stopwords"], stemmer=spec["stemmer"], pattern=spec["pattern"])
        if tok.spec()["stopwords_sha256"] != spec.get("stopwords_sha256"):
            raise ArtifactError("the stopword list changed since this index was built (bm25s upgrade?); rebuild the index")
        return tok

    def _stems(self, words: list[str]) -> list[str]:
        cache = self._stem_cache
        new = [w for w in dict.fromkeys(words) if w not in cache]
        if new:
            if len(cache) + len(new) > self.CACHE_LIMIT:
                cache.clear()
            keep = [w for w in new if w not in self._stop]
            cache.update(zip(keep, self._stem_words(keep)))
            cache.update((w, "") for w in new if w in self._stop)
        return [s for s in map(cache.__getitem__, words) if s]

    def tokenize(self, text: str) -> list[str]:
        return self._stems(self._split(text.lower()))

    def tokenize_batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]

    def encode_batch(self, texts: Sequence[str], vocab: dict[str, int], grow: bool = True) -> list[list[int]]:
        """Token ids per text; with grow=True unseen stems get the next id, otherwise they are dropped."""
        out = []
        for text in texts:
            stems = self.tokenize(text)
            if grow:
                ids = []
                for s in stems:
                    i = vocab.get(s)
                    if i is None:
                        i = vocab[s] = len(vocab)
                    ids.append(i)
            else:
                ids = [i for i in map(vocab.get, stems) if i is not None]
            out.append(ids)
        return out


@dataclass(frozen=True)
class DocFreq:
    """Corpus statistics of stems: passages in the corpus, passages holding each stem (`lookup`: stems -> counts),
    and the tokenizer those stems come from. A BM25 index gives them (Retriever.doc_freq); sentence selection
    (rag.readers.compress) weighs question words by them."""

    n_docs: int
    lookup: Callable[[Sequence[str]], list[int]]
    tokenizer: Tokenizer
