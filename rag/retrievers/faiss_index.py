"""FAISS indexes over passage rows (inner product): made from a factory string, trained on a seeded sample, filled
chunk by chunk, their nested parts, and row-range shard indexes searched as one (ShardedIndex).

Shared by the dense index's build (rag.retrievers.dense_build) and its search (rag.retrievers.dense).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from rag.errors import ArtifactError, BadInputError, require

log = logging.getLogger(__name__)


def faiss_module():
    return require("faiss", "dense")


def check_option(name: str, value, minimum: int = 1) -> int:
    """An integer build or search option (chunk_size, ef_construction, nprobe, ...), or the user's error."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def make_index(dim: int, factory: str):
    """faiss.index_factory with inner product; a bad factory string is the user's error, said before encoding."""
    faiss = faiss_module()
    if not isinstance(factory, str) or not factory.strip():
        raise BadInputError(f"factory must be a FAISS index_factory string such as Flat, HNSW32 or IVF1024,PQ32, got {factory!r}")
    try:
        return faiss.index_factory(dim, factory.strip(), faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise BadInputError(
            f"FAISS cannot make index {factory!r} for {dim}-d vectors ({first}); examples: Flat, HNSW32, "
            f"IVF1024,Flat, IVF1024,PQ32 (PQ m must divide the dimension {dim})"
        ) from None


def index_parts(index) -> list:
    """The index and the indexes nested in it (pre-transform, refine, IVF quantizer), downcast to their classes;
    of every shard for a ShardedIndex."""
    faiss = faiss_module()
    out, todo = [], list(index.shards) if isinstance(index, ShardedIndex) else [index]
    while todo:
        idx = faiss.downcast_index(todo.pop())
        out.append(idx)
        if isinstance(idx, faiss.IndexPreTransform):
            todo.append(idx.index)
        if isinstance(idx, faiss.IndexRefine):
            todo.append(idx.base_index)
        if isinstance(idx, faiss.IndexIVF):
            todo.append(idx.quantizer)
    return out


def ivf_parts(index) -> list:
    faiss = faiss_module()
    return [p for p in index_parts(index) if isinstance(p, faiss.IndexIVF)]


def ivf_of(index):
    """The (first) inverted-file part, or None."""
    return next(iter(ivf_parts(index)), None)


def hnsw_parts(index) -> list:
    return [p for p in index_parts(index) if hasattr(p, "hnsw")]


def refine_parts(index) -> list:
    faiss = faiss_module()
    return [p for p in index_parts(index) if isinstance(p, faiss.IndexRefine)]


def default_train_sample(n: int, nlist: int) -> int:
    """Vectors to train IVF/PQ on: 40 per list (faiss warns below 39), at least 50k, at most n."""
    return min(n, max(40 * nlist, 50_000))


def check_fits(index, n: int, factory: str, train_sample: int | None) -> None:
    """Refuse, before any encoding, an IVF index with more lists than vectors to train them."""
    ivf = ivf_of(index)
    if train_sample is not None and (not isinstance(train_sample, int) or train_sample <= 0):
        raise BadInputError(f"train_sample must be a positive integer, got {train_sample!r}")
    if ivf is None:
        return
    available = min(n, train_sample or n)
    if ivf.nlist > available:
        suggestion = max(1, int(np.sqrt(n)))
        raise BadInputError(
            f"{factory!r} has {ivf.nlist} inverted lists but only {available} vectors to train them; "
            f"use fewer lists, e.g. IVF{suggestion} (about sqrt(n) to 4*sqrt(n) for n={n})"
        )


def set_build_options(index, ef_construction: int) -> None:
    """HNSW parts get efConstruction; PQ parts skip polysemous training (index_factory turns it on for 8-bit PQ;
    it only serves Hamming-filtered search, unused here, and makes training ~60x slower)."""
    for part in index_parts(index):
        if hasattr(part, "hnsw"):
            part.hnsw.efConstruction = int(ef_construction)
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False


def train_sample_size(index, n: int, train_sample: int | None) -> int:
    """Vectors the index is trained on: 0 when it needs no training."""
    if index.is_trained:
        return 0
    ivf = ivf_of(index)
    return min(train_sample or default_train_sample(n, ivf.nlist if ivf is not None else 0), n)


def train_index(index, embeddings: np.ndarray, factory: str, n_train: int, seed: int) -> None:
    """Train on n_train rows of (n, dim) `embeddings` (may be a memmap) drawn with `seed`."""
    n = len(embeddings)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))  # sorted: sequential reads
    log.info("training %s on %d of %d vectors", factory, n_train, n)
    try:
        index.train(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
    except RuntimeError as e:
        raise BadInputError(f"FAISS could not train {factory!r} on {n_train} vectors: {str(e).strip().splitlines()[-1]}") from None


def add_rows(index, embeddings: np.ndarray, start: int, stop: int, chunk_size: int,
             report: Callable[[int], None] | None = None) -> None:
    """Add rows [start, stop) of `embeddings` to the index, chunk_size rows per call (the chunks decide an HNSW
    graph, so builds that must agree add the same chunks)."""
    for s in range(start, stop, chunk_size):
        block = np.ascontiguousarray(embeddings[s : min(s + chunk_size, stop)], dtype=np.float32)
        index.add(block)
        if report is not None:
            report(len(block))


def build_faiss(embeddings: np.ndarray, factory: str, *, ef_construction: int = 200, train_sample: int | None = None,
                seed: int = 0, chunk_size: int = 8192, progress: bool = True):
    """(n, dim) float32 (may be a memmap) -> (trained, filled FAISS index, number of training vectors), in memory."""
    from tqdm import tqdm

    n, dim = embeddings.shape
    index = make_index(dim, factory)
    check_fits(index, n, factory, train_sample)
    set_build_options(index, ef_construction)
    n_train = train_sample_size(index, n, train_sample)
    if n_train:
        train_index(index, embeddings, factory, n_train, seed)
    with tqdm(total=n, desc=f"add {factory}", unit="vector", disable=not progress, file=sys.stderr) as bar:
        add_rows(index, embeddings, 0, n, chunk_size, bar.update)
    return index, n_train


def read_index(folder: Path, name: str):
    """faiss.read_index of folder/name; an unreadable file is an ArtifactError saying to rebuild."""
    faiss = faiss_module()
    try:
        return faiss.read_index(str(Path(folder) / name))
    except RuntimeError as e:
        raise ArtifactError(f"{folder}/{name} cannot be read by FAISS ({str(e).strip().splitlines()[-1]}); rebuild the index") from None


class ShardedIndex:
    """Search several FAISS indexes over consecutive row ranges as one: each shard's top-k, merged.

    Quacks like the parts of a faiss.Index that DenseRetriever uses (d, ntotal, search). Ties in score go to
    the lower row, as in one exact index."""

    def __init__(self, indexes: list, starts: list[int]):
        self.shards = indexes
        self.starts = np.asarray(starts, np.int64)
        self.d = indexes[0].d
        self.ntotal = int(sum(i.ntotal for i in indexes))

    @classmethod
    def load(cls, folder: Path, shards: list[dict]) -> "ShardedIndex":
        """shards: the manifest's [{file, start, stop, n_vectors}]."""
        out = []
        for s in shards:
            out.append(read_index(folder, s["file"]))
            if out[-1].ntotal != s["n_vectors"]:
                raise ArtifactError(f"{folder}/{s['file']} holds {out[-1].ntotal} vectors, the manifest says {s['n_vectors']}; rebuild")
        return cls(out, [s["start"] for s in shards])

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(nq, dim) -> scores (nq, k) float32, rows (nq, k) int64; -1 rows (score -inf) pad missing results."""
        scores, rows = [], []
        for index, start in zip(self.shards, self.starts):
            s, r = index.search(x, min(k, max(1, index.ntotal)))
            bad = r < 0
            scores.append(np.where(bad, -np.inf, s).astype(np.float32))
            rows.append(np.where(bad, -1, r + start))
        s, r = np.concatenate(scores, axis=1), np.concatenate(rows, axis=1)
        # best score first, then lower row; padding (-1) last
        order = np.lexsort((np.where(r < 0, np.iinfo(np.int64).max, r), -s), axis=-1)[:, :k]
        s, r = np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)
        if s.shape[1] < k:
            pad = k - s.shape[1]
            s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
            r = np.pad(r, ((0, 0), (0, pad)), constant_values=-1)
        return s, r
