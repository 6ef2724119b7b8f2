"""Hybrid retrieval: reciprocal-rank fusion (Cormack et al., SIGIR 2009) of member indexes over one passage store.

    score(p) = sum over members m of  weight_m / (rrf_k + rank_m(p))

rank_m starts at 1; a member that does not return p within its top depth = max(k, fusion_depth) adds nothing.
Ties: the better best rank over members first, then the lower store row.

Index folder, format 1: only manifest.json, with
    members       [{"path": absolute path, "relpath": path relative to this folder, "kind", "fingerprint"}]
    parameters    {"rrf_k", "weights", "fusion_depth"}
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from rag.artifacts import atomic_dir, check_manifest_files, read_manifest, write_manifest
from rag.corpus.store import PassageStore
from rag.errors import ArtifactError, BadInputError
from rag.retrievers.base import INDEXES, Retriever, check_queries, load_index, passages_field
from rag.types import Hit

FORMAT = 1
KIND = "index/hybrid"
DEFAULTS = {"rrf_k": 60.0, "fusion_depth": 100}


def rrf_fuse(member_hits: Sequence[Sequence[Hit]], k: int, rrf_k: float, weights: Sequence[float]) -> list[Hit]:
    """One query: each member's ranked hits -> the fused top k."""
    acc: dict[int, list] = {}  # row -> [score, best rank, pid]
    for hits, w in zip(member_hits, weights):
        for h in hits:
            a = acc.get(h.row)
            if a is None:
                acc[h.row] = [w / (rrf_k + h.rank), h.rank, h.pid]
            else:
                a[0] += w / (rrf_k + h.rank)
                a[1] = min(a[1], h.rank)
    best = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[0]))[:k]
    return [Hit(pid=a[2], score=a[0], rank=i + 1, row=row) for i, (row, a) in enumerate(best)]


def _parse_members(members) -> list[Path]:
    if isinstance(members, (str, os.PathLike)):
        members = [m for m in str(members).split(",") if m.strip()]
    paths = [Path(str(m).strip()) for m in members or ()]
    if len(paths) < 2:
        raise BadInputError("a hybrid index needs at least two member indexes (--members A,B)")
    return paths


def _parse_weights(weights, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if isinstance(weights, str):
        weights = [w for w in weights.split(",") if w.strip()]
    try:
        out = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise BadInputError(f"weights must be numbers, got {weights!r}") from None
    if len(out) != n:
        raise BadInputError(f"{len(out)} weights for {n} members; give one weight per member")
    if any(not w > 0 for w in out):
        raise BadInputError(f"weights must be positive, got {out}")
    return out


def _check_params(rrf_k, fusion_depth) -> tuple[float, int]:
    try:
        rrf_k = float(rrf_k)
    except (TypeError, ValueError):
        raise BadInputError(f"rrf_k must be a number, got {rrf_k!r}") from None
    if not rrf_k >= 0:
        raise BadInputError(f"rrf_k must be >= 0, got {rrf_k}")
    if not isinstance(fusion_depth, int) or isinstance(fusion_depth, bool) or fusion_depth < 1:
        raise BadInputError(f"fusion_depth must be a positive integer, got {fusion_depth!r}")
    return rrf_k, fusion_depth


@INDEXES.register("hybrid")
class HybridRetriever(Retriever):
    """RRF over member retrievers that share `store`. Query options are forwarded to the members that take them."""

    BUILD_OPTIONS = ("members", "rrf_k", "weights", "fusion_depth")

    def __init__(
        self,
        store: PassageStore,
        members: Sequence[Retriever],
        rrf_k: float = DEFAULTS["rrf_k"],
        weights: Sequence[float] | None = None,
        fusion_depth: int = DEFAULTS["fusion_depth"],
        manifest: dict | None = None,
    ):
        if len(members) < 2:
            raise BadInputError("a hybrid retriever needs at least two members")
        for i, m in enumerate(members):
            if m.store.fingerprint != store.fingerprint:
                raise BadInputError(
                    f"member {i} ({type(m).__name__}) searches passages {m.store.folder} (fingerprint {m.store.fingerprint}), "
                    f"not {store.folder} ({store.fingerprint}); every member must index the same passage store"
                )
        self.store = store
        self.members = list(members)
        self.rrf_k, self.fusion_depth = _check_params(rrf_k, fusion_depth)
        self.weights = _parse_weights(weights, len(self.members))
        self.manifest = manifest or {}
        self.SEARCH_OPTIONS = tuple(dict.fromkeys(["fusion_depth", *(o for m in self.members for o in m.SEARCH_OPTIONS)]))

    def configure(self, **options) -> "HybridRetriever":
        for name, value in options.items():
            if value is None:
                continue
            if name == "fusion_depth":
                _, self.fusion_depth = _check_params(self.rrf_k, value)
                continue
            takers = [m for m in self.members if name in m.SEARCH_OPTIONS]
            if not takers:
                raise BadInputError(f"no member of this hybrid index has the search option {name!r} (accepted: {', '.join(self.SEARCH_OPTIONS)})")
            for m in takers:
                m.configure(**{name: value})
        return self

    @classmethod
    def build(
        cls,
        store: PassageStore,
        out,
        *,
        overwrite: bool = False,
        progress: bool = True,
        members=None,
        rrf_k: float = DEFAULTS["rrf_k"],
        weights=None,
        fusion_depth: int = DEFAULTS["fusion_depth"],
    ) -> Path:
        paths = _parse_members(members)
        weights = _parse_weights(weights, len(paths))
        rrf_k, fusion_depth = _check_params(rrf_k, fusion_depth)
        out = Path(out)
        entries = []
        for p in paths:
            m = read_manifest(p, kind="index/")
            check_manifest_files(p, m)
            fp = (m.get("passages") or {}).get("fingerprint")
            if fp != store.fingerprint:
                raise ArtifactError(
                    f"member {p} was built from passages {(m.get('passages') or {}).get('path')} (fingerprint {fp}), "
                    f"but the hybrid is over {store.folder} ({store.fingerprint}); every member must index the same "
                    f"passage store: rebuild {p} with --passages {store.folder}"
                )
            entries.append({
                "path": str(p.resolve()),
                "relpath": os.path.relpath(p.resolve(), out.resolve()),
                "kind": m["kind"],
                "fingerprint": fp,
            })
        with atomic_dir(out, overwrite=overwrite, kind=KIND, inputs=[store.folder, *paths]) as tmp:
            write_manifest(
                tmp,
                kind=KIND,
                format=FORMAT,
                members=entries,
                parameters={"rrf_k": rrf_k, "weights": weights, "fusion_depth": fusion_depth},
                passages=passages_field(store, out),
                files={},
            )
        return out

    @classmethod
    def load(cls, folder: Path, manifest: dict, store: PassageStore) -> "HybridRetriever":
        folder = Path(folder)
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: hybrid index format {manifest.get('format')}, this rag reads {FORMAT}; rebuild it")
        members = []
        for m in manifest["members"]:
            rel = (folder / m["relpath"]).resolve()
            path = rel if rel.exists() else Path(m["path"])
            if not path.exists():
                raise ArtifactError(f"{folder}: member index not found at {rel} or {m['path']}; restore it or rebuild the hybrid")
            members.append(load_index(path, passages=store))
        p = manifest["parameters"]
        return cls(store, members, rrf_k=p["rrf_k"], weights=p["weights"], fusion_depth=p["fusion_depth"], manifest=manifest)

    def doc_freq(self):
        return next((d for d in (m.doc_freq() for m in self.members) if d is not None), None)

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        check_queries(queries, k)
        depth = max(k, self.fusion_depth)
        per_member = [m.search_batch(queries, depth) for m in self.members]  # member -> query -> hits
        return [rrf_fuse([hits[q] for hits in per_member], k, self.rrf_k, self.weights) for q in range(len(queries))]
