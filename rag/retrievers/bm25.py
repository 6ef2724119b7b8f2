"""BM25 over a passage store: one index kind ("bm25"), interchangeable engines, one tokenizer.

Engines (ENGINES registry):
    bm25s      default; bm25s (numpy backend) precomputes scores into a sparse matrix; a query batch is scored
               with one sparse product (work ~ postings of the query terms), in parallel threads
    rank-bm25  rank_bm25.BM25Okapi, kept as the reference implementation (slow: a Python loop per query term)

Index folder, format 1:
    manifest.json             kind "index/bm25", engine, parameters, tokenizer spec, passages fingerprint, file sizes
    bm25s:      data.csc.index.npy, indices.csc.index.npy, indptr.csc.index.npy   precomputed scores, CSC (stem x passage)
                vocab.index.json {stem: column}, params.index.json (bm25s's own), nonoccurrence_array.index.npy (bm25l/bm25+)
    rank-bm25:  tokens.npy int32 (every passage's token ids, concatenated), offsets.npy int64 (n_passages + 1,),
                vocab.json [stem by id]; BM25Okapi is rebuilt from these on load (nothing is pickled)

Passages are indexed as passage_text(title, text) = title + "\\n" + text. A hit needs at least one query stem
with a positive weight: passages that match nothing are never returned, so a query may get fewer than k hits.
Ties are broken by store row (lower first), identically for every engine.
"""
from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.artifacts import HashingFile, atomic_dir, check_manifest_files, file_sizes, read_json_file, write_json_atomic, write_manifest
from rag.corpus.store import PassageStore, passage_text
from rag.errors import ArtifactError, BadInputError, require
from rag.progress import draw_bars, stage
from rag.registry import Registry
from rag.retrievers.base import INDEXES, Retriever, check_queries, make_hits, passages_field
from rag.tokenize import DocFreq, Tokenizer
from rag.types import Hit

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "index/bm25"
SETTINGS = "settings.json"  # engine, parameters and tokenizer as built (the manifest's copy is checked against it)

# variant -> (bm25s `method` = term-frequency part, bm25s `idf_method`); see Kamphuis et al. (ECIR 2020)
VARIANTS: dict[str, tuple[str, str]] = {
    "lucene": ("lucene", "lucene"),  # Lucene/Anserini: idf log(1 + (N - df + .5) / (df + .5)), never negative
    "robertson": ("robertson", "robertson"),  # tf / (tf + k1 * norm) (no k1 + 1 factor), idf floored at 0
    "atire": ("atire", "atire"),  # idf log(N / df)
    "bm25l": ("bm25l", "bm25l"),
    "bm25+": ("bm25+", "bm25+"),
    # rank_bm25.BM25Okapi with epsilon=0: tf * (k1 + 1) / (tf + k1 * norm) times Robertson idf floored at 0.
    # (BM25Okapi's default epsilon=0.25 lifts negative idfs to 0.25 * mean idf; bm25s cannot, so both engines use 0.)
    "okapi": ("atire", "robertson"),
}
DELTA = 0.5  # bm25l / bm25+ lower bound on the term-frequency part (bm25s default)
DEFAULTS = {"engine": "bm25s", "k1": 0.9, "b": 0.4, "variant": "lucene"}  # k1, b: Anserini's (pyserini DPR baselines)

ENGINES = Registry("BM25 engine")


def _bm25s():
    import bm25s

    # bm25s pins its logger at DEBUG; let it follow the application's level (rag -v / -vv) instead
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def topk_rows(scores: np.ndarray, k: int, floor: float = 0.0, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best k of `scores` with score > floor: score descending, then row ascending.

    `rows` names the passage of each score (default: position = row, i.e. a full score vector).
    """
    n = scores.size
    cand = np.arange(n) if k >= n else np.flatnonzero(scores >= np.partition(scores, n - k)[n - k])
    # every candidate tied with the k-th best is kept above, so ties resolve by row below
    cand = cand[scores[cand] > floor]
    ids = cand if rows is None else np.asarray(rows)[cand]
    best = cand[np.lexsort((ids, -scores[cand]))][:k]
    return (best if rows is None else np.asarray(rows)[best]).astype(np.int64), scores[best]


class Engine(ABC):
    """Scores passages (rows 0..n-1) for tokenized queries; built from token ids in store-row order."""

    LIBRARIES: tuple[str, ...] = ()
    VARIANTS: tuple[str, ...] = ()

    @classmethod
    @abstractmethod
    def build(cls, ids: list[list[int]], vocab: dict[str, int], folder: Path, params: dict, progress: bool) -> list[str]:
        """Write the engine's files into `folder`; returns their names. ids: token ids per passage, by row."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, params: dict, n_passages: int) -> "Engine":
        """Open the files `build` wrote."""

    def doc_freqs(self, stems: Sequence[str]) -> list[int] | None:
        """Passages holding each stem (0 when unknown); None when the engine keeps no such statistic."""
        return None

    @abstractmethod
    def topk(self, queries: list[list[str]], k: int, n_threads: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query (stems): (rows int64, scores), best first, ties by row, only passages matching a query stem."""


@ENGINES.register("bm25s")
class BM25sEngine(Engine):
    LIBRARIES = ("bm25s", "scipy")
    VARIANTS = tuple(VARIANTS)

    def __init__(self, bm25):
        self.bm25 = bm25  # bm25s.BM25, memory-mapped score matrix
        self.n = int(bm25.scores["num_docs"])
        self._csr = None

    @classmethod
    def build(cls, ids, vocab, folder, params, progress):
        bm25s = _bm25s()
        method, idf_method = VARIANTS[params["variant"]]
        bm25 = bm25s.BM25(k1=params["k1"], b=params["b"], delta=params["delta"], method=method, idf_method=idf_method, backend="numpy")
        # bm25s takes the whole tokenized corpus at once (its index step is not incremental)
        bm25.index((ids, vocab), create_empty_token=False, show_progress=progress)
        bm25.save(folder, show_progress=progress)
        return sorted(p.name for p in folder.iterdir() if p.name.endswith(".index.npy") or p.name.endswith(".index.json"))

    @classmethod
    def load(cls, folder, params, n_passages):
        bm25s = _bm25s()
        bm25 = bm25s.BM25.load(folder, mmap=True, load_vocab=True, allow_pickle=False)
        method, idf_method = VARIANTS[params["variant"]]
        saved = {"k1": bm25.k1, "b": bm25.b, "method": bm25.method, "idf_method": bm25.idf_method}
        want = {"k1": params["k1"], "b": params["b"], "method": method, "idf_method": idf_method}
        if saved != want:
            raise ArtifactError(f"{folder}: the manifest's BM25 parameters {want} differ from the saved engine's {saved} "
                                f"(params.index.json); rebuild the index to change them")
        if int(bm25.scores["num_docs"]) != n_passages:
            raise ArtifactError(f"{folder}: bm25s index holds {bm25.scores['num_docs']} passages, the manifest {n_passages}; rebuild")
        return cls(bm25)

    def doc_freqs(self, stems):
        # a stem's column of the (stem x passage) score matrix holds one entry per passage containing it
        indptr, vocab = self.bm25.scores["indptr"], self.bm25.vocab_dict
        return [int(indptr[vocab[t] + 1] - indptr[vocab[t]]) if t in vocab else 0 for t in stems]

    def _floor(self, ids: list[int]) -> float:
        # bm25l / bm25+ give every passage a baseline for each query term; a passage matching nothing scores exactly it
        nonocc = self.bm25.nonoccurrence_array
        return float(nonocc[ids].sum()) if nonocc is not None else 0.0

    def _matrix(self):
        """bm25s's precomputed scores as a (vocab, n_passages) CSR matrix over the same (memory-mapped) arrays."""
        if self._csr is None:
            import scipy.sparse as sp

            sc = self.bm25.scores
            vocab_size = len(sc["indptr"]) - 1
            self._csr = sp.csr_matrix((sc["data"], sc["indices"], sc["indptr"]), shape=(vocab_size, self.n), copy=False)
        return self._csr

    def topk(self, queries, k, n_threads):
        # Scores for a whole batch in one sparse product, (n_queries, vocab) @ (vocab, n_passages): work is
        # proportional to the postings of the query terms, not to n_passages (bm25s's own retrieve fills a dense
        # n_passages vector per query), and scipy releases the GIL, so query chunks run in parallel threads.
        vocab = self.bm25.vocab_dict
        ids = [[vocab[t] for t in q if t in vocab] for q in queries]
        threads = max(1, int(n_threads) or (os.cpu_count() or 1))
        if threads == 1 or len(ids) < 2 * threads:
            return self._topk_ids(ids, k)
        from concurrent.futures import ThreadPoolExecutor

        step = -(-len(ids) // threads)
        with ThreadPoolExecutor(threads) as ex:
            parts = ex.map(lambda s: self._topk_ids(ids[s : s + step], k), range(0, len(ids), step))
            return [r for part in parts for r in part]

    def _topk_ids(self, ids: list[list[int]], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        import scipy.sparse as sp

        m = self._matrix()
        lens = [len(q) for q in ids]
        # repeated query terms are summed into one coefficient, exactly like adding their column twice
        q = sp.csr_matrix(
            (np.ones(sum(lens), dtype=m.dtype), (np.repeat(np.arange(len(ids)), lens), np.fromiter((t for x in ids for t in x), np.int64, sum(lens)))),
            shape=(len(ids), m.shape[0]),
        )
        s = q @ m  # (n_queries, n_passages) CSR: only passages matching some query term are stored
        out = []
        for i, qi in enumerate(ids):
            lo, hi = s.indptr[i], s.indptr[i + 1]
            rows, sc = topk_rows(s.data[lo:hi], k, floor=0.0, rows=s.indices[lo:hi])
            # bm25l / bm25+: every passage also gets the non-occurrence baseline of each query term
            out.append((rows, sc + np.float32(self._floor(qi)) if self.bm25.nonoccurrence_array is not None else sc))
        return out


@ENGINES.register("rank-bm25")
class RankBM25Engine(Engine):
    """rank_bm25.BM25Okapi over the same token ids; the reference the bm25s engine is tested against."""

    LIBRARIES = ("rank-bm25",)
    VARIANTS = ("okapi",)
    EPSILON = 0.0  # negative idfs become 0 (as bm25s's Robertson idf), not rank_bm25's default 0.25 * mean idf

    def __init__(self, bm25, vocab: dict[str, int]):
        self.bm25 = bm25
        self.vocab = vocab

    @classmethod
    def build(cls, ids, vocab, folder, params, progress):
        lengths = np.fromiter((len(d) for d in ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((t for d in ids for t in d), dtype=np.int32, count=int(offsets[-1]))
        for name, arr in (("tokens.npy", flat), ("offsets.npy", offsets)):
            with HashingFile(folder / name) as f:  # hashed as written, for the manifest
                np.save(f, arr, allow_pickle=False)
        stems = sorted(vocab, key=vocab.__getitem__)  # id -> stem
        (folder / "vocab.json").write_text(json.dumps(stems, ensure_ascii=False), encoding="utf-8")
        return ["tokens.npy", "offsets.npy", "vocab.json"]

    @classmethod
    def load(cls, folder, params, n_passages):
        rank_bm25 = require("rank_bm25", "reference")
        flat = np.load(folder / "tokens.npy", allow_pickle=False)
        offsets = np.load(folder / "offsets.npy", allow_pickle=False)
        stems = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        if offsets.size != n_passages + 1 or offsets[-1] != flat.size:
            raise ArtifactError(f"{folder}: tokens.npy / offsets.npy do not match {n_passages} passages; rebuild")
        corpus = [d.tolist() for d in np.split(flat, offsets[1:-1])]
        bm25 = rank_bm25.BM25Okapi(corpus, k1=params["k1"], b=params["b"], epsilon=cls.EPSILON)
        return cls(bm25, {s: i for i, s in enumerate(stems)})

    def topk(self, queries, k, n_threads):
        out = []
        for q in queries:
            ids = [self.vocab[t] for t in q if t in self.vocab]
            if not ids:
                out.append((np.zeros(0, np.int64), np.zeros(0)))
                continue
            out.append(topk_rows(np.asarray(self.bm25.get_scores(ids)), k))
        return out


def _check_params(engine: str, k1, b, variant: str) -> dict:
    eng = ENGINES.get(engine)
    if variant not in VARIANTS:
        raise BadInputError(f"unknown BM25 variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    if variant not in eng.VARIANTS:
        raise BadInputError(f"the {engine} engine implements only the {', '.join(eng.VARIANTS)} variant(s), not {variant!r}")
    try:
        k1, b = float(k1), float(b)
    except (TypeError, ValueError):
        raise BadInputError(f"k1 and b must be numbers, got k1={k1!r}, b={b!r}") from None
    if not k1 >= 0:
        raise BadInputError(f"k1 must be >= 0, got {k1}")
    if not 0.0 <= b <= 1.0:
        raise BadInputError(f"b must be between 0 and 1, got {b}")
    method, idf_method = VARIANTS[variant]
    return {"k1": k1, "b": b, "variant": variant, "delta": DELTA, "bm25s_method": method, "bm25s_idf_method": idf_method}


def tokenize_store(store: PassageStore, tokenizer: Tokenizer, progress: bool = True, batch_size: int = 10_000):
    """Token ids per passage in row order, and the stem -> id vocabulary; passages stream in batches."""
    from rag.progress import bar as progress_bar

    vocab: dict[str, int] = {}
    ids: list[list[int]] = []
    with progress_bar("tokenize", total=len(store), unit="passage", enabled=progress) as bar:
        for _, batch in store.iter_batches(batch_size=batch_size, columns=("title", "text")):
            texts = [passage_text(t, x) for t, x in zip(batch["title"], batch["text"])]
            ids.extend(tokenizer.encode_batch(texts, vocab, grow=True))
            bar.update(len(texts))
    return ids, vocab


@INDEXES.register("bm25")
class BM25Retriever(Retriever):
    """Lexical retrieval; `n_threads` (query time): threads that score query chunks in parallel (0 = one per core)."""

    BUILD_OPTIONS = ("engine", "k1", "b", "variant")
    SEARCH_OPTIONS = ("n_threads",)

    def __init__(self, store: PassageStore, engine: Engine, tokenizer: Tokenizer, manifest: dict, n_threads: int = 0):
        self.store = store
        self.engine = engine
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.n_threads = n_threads

    @classmethod
    def build(
        cls,
        store: PassageStore,
        out,
        *,
        overwrite: bool = False,
        progress: bool = True,
        engine: str = DEFAULTS["engine"],
        k1: float = DEFAULTS["k1"],
        b: float = DEFAULTS["b"],
        variant: str = DEFAULTS["variant"],
        batch_size: int = 10_000,
    ) -> Path:
        params = _check_params(engine, k1, b, variant)
        eng = ENGINES.get(engine)
        tokenizer = Tokenizer()
        with atomic_dir(out, overwrite=overwrite, kind=KIND, inputs=[store.folder]) as tmp:
            ids, vocab = tokenize_store(store, tokenizer, progress, batch_size)
            if len(ids) != len(store):
                raise ArtifactError(f"{store.folder}: read {len(ids)} passages, its manifest says {len(store)}; rebuild the passage store")
            with stage(f"{engine} index", f"{len(ids):,} passages, {len(vocab):,} terms"):
                try:
                    files = eng.build(ids, vocab, tmp, params, draw_bars(progress))
                except OSError as e:
                    if e.filename or e.errno:
                        raise
                    # numpy's short write (bm25s saves with np.save) names no file and sets no errno
                    raise ArtifactError(f"{tmp}: writing the {engine} index failed ({e}): the disk is full or a "
                                        f"file-size limit was reached; free space and rerun") from e
            # what changes scores, kept beside the engine files too: load refuses a manifest edited to say otherwise
            write_json_atomic(tmp / SETTINGS, {"engine": engine, "parameters": params, "tokenizer": tokenizer.spec()})
            files = [*files, SETTINGS]
            write_manifest(
                tmp,
                kind=KIND,
                format=FORMAT,
                libraries=(*eng.LIBRARIES, "PyStemmer", "numpy"),
                engine=engine,
                parameters=params,
                tokenizer=tokenizer.spec(),
                passages=passages_field(store, out),
                vocab_size=len(vocab),
                n_tokens=int(sum(map(len, ids))),
                files=file_sizes(tmp, files),
            )
        return Path(out)

    @classmethod
    def load(cls, folder: Path, manifest: dict, store: PassageStore) -> "BM25Retriever":
        folder = Path(folder)
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: BM25 index format {manifest.get('format')}, this rag reads {FORMAT}; rebuild it")
        check_manifest_files(folder, manifest)
        if SETTINGS in manifest["files"]:  # indexes built before the file existed have only the manifest
            saved = read_json_file(folder / SETTINGS)
            said = {"engine": manifest.get("engine"), "parameters": manifest.get("parameters"), "tokenizer": manifest.get("tokenizer")}
            wrong = sorted(k for k in said if said[k] != saved.get(k))
            if wrong:
                raise ArtifactError(f"{folder}: the manifest's {', '.join(wrong)} differ from the settings the index was "
                                    f"built with ({SETTINGS}); the manifest was edited. Rebuild the index to change them")
        tokenizer = Tokenizer.from_spec(manifest["tokenizer"])
        try:
            engine = ENGINES.get(manifest["engine"]).load(folder, manifest["parameters"], len(store))
        except (ValueError, KeyError, EOFError, UnicodeDecodeError) as e:  # bm25s / numpy on a damaged file
            raise ArtifactError(f"{folder}: the {manifest['engine']} index files cannot be read ({type(e).__name__}: "
                                f"{str(e)[:200]}); they are damaged: rebuild with: rag index build --kind bm25 ...") from e
        return cls(store, engine, tokenizer, manifest)

    def doc_freq(self) -> DocFreq | None:
        if self.engine.doc_freqs([]) is None:
            return None
        return DocFreq(len(self.store), self.engine.doc_freqs, self.tokenizer)

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        check_queries(queries, k)
        tokens = self.tokenizer.tokenize_batch(queries)
        found = self.engine.topk(tokens, k, int(self.n_threads))
        return make_hits(self.store, [r for r, _ in found], [s for _, s in found])
