"""The retriever interface, the index registry, and loading an index folder by its manifest.

Every index folder's manifest has:
    kind       "index/<name>" where <name> is a key of INDEXES
    passages   {"path": str (as given at build time), "abspath": str, "relpath": str (from the index folder),
                "fingerprint": str, "n_passages": int}
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.artifacts import read_manifest
from rag.corpus.store import PassageStore
from rag.errors import ArtifactError, BadInputError
from rag.registry import Registry
from rag.types import Hit, Passage

if TYPE_CHECKING:  # pragma: no cover
    from rag.tokenize import DocFreq

# index kind -> Retriever subclass with `build(...)` and `load(folder, store)` classmethods
INDEXES = Registry("index kind")


class Retriever(ABC):
    """One batch method; the single-query form and passage fetching are derived."""

    store: PassageStore
    # build-time parameter names `build(**params)` accepts (the CLI refuses the others for this kind)
    BUILD_OPTIONS: tuple[str, ...] = ()
    # query-time settings `configure(**options)` accepts (e.g. dense: ef_search, nprobe)
    SEARCH_OPTIONS: tuple[str, ...] = ()

    def configure(self, **options) -> "Retriever":
        """Set query-time options; None values are ignored, names outside SEARCH_OPTIONS are errors."""
        kind = type(self).__name__
        for name, value in options.items():
            if value is None:
                continue
            if name not in self.SEARCH_OPTIONS:
                accepted = ", ".join(self.SEARCH_OPTIONS) or "none"
                raise BadInputError(f"{kind} has no search option {name!r} (it accepts: {accepted})")
            setattr(self, name, value)
        return self

    @abstractmethod
    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query, best first, rank starting at 1."""

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def doc_freq(self) -> "DocFreq | None":
        """Corpus document frequencies of BM25 tokens, for sentence selection (rag.readers.compress); None when
        this index keeps none (dense)."""
        return None

    def passages(self, hits: Sequence[Hit]) -> list[Passage]:
        return self.store.get_rows([h.row for h in hits])

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, manifest: dict, store: PassageStore) -> "Retriever":
        """Open a built index folder (already checked against `store`)."""


def check_queries(queries: Sequence[str], k: int) -> None:
    if isinstance(queries, str):
        raise BadInputError("search_batch takes a list of queries, not a single string")
    if not isinstance(k, int) or k <= 0:
        raise BadInputError(f"k must be a positive integer, got {k!r}")
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            raise BadInputError(f"query {i} is empty")


def make_hits(store: PassageStore, rows: Sequence, scores: Sequence) -> list[list[Hit]]:
    """Per-query arrays of store rows and scores (best first) -> Hits, looking pids up in one batch."""
    import numpy as np

    sizes = [len(r) for r in rows]
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    pids = store.table.column("pid").take(flat).to_pylist() if flat.size else []
    out, at = [], 0
    for n, sc in zip(sizes, scores):
        out.append([Hit(pid=pids[at + j], score=float(sc[j]), rank=j + 1, row=int(flat[at + j])) for j in range(n)])
        at += n
    return out


def passages_field(store: PassageStore, out: str | os.PathLike | None = None) -> dict:
    """The manifest block that ties an index to the exact passage store it was built from. With the index folder
    `out`, the store is also recorded relative to it, so the index works from any working directory and can be
    moved together with its store."""
    field = {"path": str(store.folder), "fingerprint": store.fingerprint, "n_passages": len(store)}
    if out is not None:
        field["abspath"] = str(store.folder.resolve())
        field["relpath"] = os.path.relpath(store.folder.resolve(), Path(out).resolve())
    return field


def recorded_store_path(folder: Path, info: dict) -> Path:
    """Where an index's passage store is: beside it as recorded relative to it (the index and store moved
    together), else at its absolute path, else the path as given at build time (older indexes: relative to the
    working directory of the build, or to the index folder)."""
    candidates = []
    if info.get("relpath"):
        candidates.append(folder / info["relpath"])
    if info.get("abspath"):
        candidates.append(Path(info["abspath"]))
    path = Path(info.get("path", ""))
    candidates += [path] if path.is_absolute() else [path, folder / path]
    return next((c for c in candidates if c.exists()), candidates[0])


def open_store_for(folder: Path, manifest: dict, passages: str | os.PathLike | PassageStore | None) -> PassageStore:
    info = manifest.get("passages") or {}
    if isinstance(passages, PassageStore):
        store = passages
    else:
        store = PassageStore(Path(passages) if passages is not None else recorded_store_path(folder, info))
    if store.fingerprint != info.get("fingerprint"):
        raise ArtifactError(
            f"index {folder} was built from passages with fingerprint {info.get('fingerprint')} "
            f"({info.get('path')}), but {store.folder} has {store.fingerprint}: rebuild the index over these "
            f"passages, or pass --passages with the store it was built from"
        )
    return store


def load_index(folder: str | os.PathLike, passages: str | os.PathLike | PassageStore | None = None) -> Retriever:
    """Open any index folder; its manifest says which kind. Refuses mismatched passages or truncated files."""
    folder = Path(folder)
    manifest = read_manifest(folder, kind="index/")
    kind = manifest["kind"].split("/", 1)[1]
    cls = INDEXES.get(kind)
    store = open_store_for(folder, manifest, passages)
    return cls.load(folder, manifest, store)
