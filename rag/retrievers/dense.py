"""Dense retrieval: sentence embeddings of each passage, searched with a FAISS index (inner product).

Index folder, format 1:
    manifest.json   kind "index/dense"; passages {path, fingerprint, n_passages}; encoder {backend, name,
                    location, dim, normalize, max_seq_length, libraries}; factory; metric; train_sample; engine; files
    embeddings.npy  float32 (n_passages, dim), row i = passage row i, L2-normalized (so inner product = cosine);
                    kept so other FAISS factories can be built later without re-encoding (`embeddings_from`)
    index.faiss     faiss.write_index of the index made by faiss.index_factory(dim, factory, METRIC_INNER_PRODUCT)
    shards/         instead of index.faiss when built in shards (--exec-engine ray, or --shards N): one index per
                    row range, listed in the manifest's `shards` and searched as one (rag.retrievers.faiss_index)

Building (rag.retrievers.dense_build) is plan -> work per shard -> merge, the local engine's build being one
shard: workers encode their rows chunk by chunk into `<out>.partial/encode/`, recording after each flushed chunk
how many rows are finished, the vectors become embeddings.npy, the index is trained once and every shard's rows
are added to a copy of it. A rebuild with the same passages and encoder continues from the first unfinished chunk
of every unfinished shard; a partial folder from other passages or another encoder is redone (with a warning).

Build options (BUILD_OPTIONS): encoder, factory, batch_size, device, precision, compile, max_seq_length,
chunk_size, train_sample, ef_construction, seed, embeddings_from (reuse another dense index's vectors); the
`engine` argument (rag.engine.EngineConfig) chooses where encoding and indexing run.
Query options (configure / set_search_params / load kwargs): ef_search (HNSW), nprobe (IVF), k_factor
(indexes with an exact re-rank stage, factory "...,RFlat" or "...,Refine(...)": candidates re-ranked = k_factor * k).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rag.artifacts import check_manifest_files, load_npy, read_json_file, read_manifest
from rag.corpus.store import PassageStore
from rag.encoders import DEFAULT_ENCODER, Encoder, get_encoder, identity_of
from rag.errors import ArtifactError, BadInputError
from rag.retrievers.base import INDEXES, Retriever, check_queries, make_hits
from rag.retrievers.dense_build import EMBEDDINGS, FORMAT, INDEX_FILE, KIND, build_dense
from rag.retrievers.faiss_index import (
    ShardedIndex, check_option, hnsw_parts, ivf_of, ivf_parts, read_index, refine_parts,
)
from rag.types import Hit

if TYPE_CHECKING:  # pragma: no cover
    from rag.engine import EngineConfig

DEFAULTS = {
    "encoder": DEFAULT_ENCODER,
    "factory": "Flat",
    "device": "auto",
    "chunk_size": 8192,
    "ef_construction": 200,
    "seed": 0,
    # query time; faiss's own defaults (efSearch 16, nprobe 1) give poor recall
    "ef_search": 128,
    "nprobe": 32,
    "k_factor": 4,
}
# query option -> what kind of index has it (for errors)
OPTION_APPLIES_TO = {"ef_search": "HNSW", "nprobe": "IVF", "k_factor": "re-ranking (…,RFlat)"}


@INDEXES.register("dense")
class DenseRetriever(Retriever):
    """Sentence-embedding retrieval over a FAISS index.

    Query-time options (`configure`, or load kwargs): ef_search (HNSW indexes), nprobe (IVF indexes),
    k_factor (re-ranking indexes such as IVF4096,PQ192x4fs,RFlat: k_factor * k candidates are re-scored
    exactly); SEARCH_OPTIONS of an instance lists only the ones its index has.
    """

    BUILD_OPTIONS = (
        "encoder", "factory", "batch_size", "device", "train_sample", "chunk_size",
        "ef_construction", "max_seq_length", "precision", "compile", "seed", "embeddings_from",
    )
    SEARCH_OPTIONS = ("ef_search", "nprobe", "k_factor")

    def __init__(self, store: PassageStore, index, encoder: Encoder, manifest: dict, folder: Path | None = None):
        self.store = store
        self.index = index
        self.encoder = encoder
        self.manifest = manifest
        self.folder = folder
        hnsw, ivf, refine = hnsw_parts(index), ivf_of(index), refine_parts(index)
        has = {"ef_search": bool(hnsw), "nprobe": ivf is not None, "k_factor": bool(refine)}
        self.SEARCH_OPTIONS = tuple(o for o in type(self).SEARCH_OPTIONS if has[o])
        self.ef_search: int | None = None
        self.nprobe: int | None = None
        self.k_factor: int | None = None
        self.configure(
            ef_search=DEFAULTS["ef_search"] if hnsw else None,
            nprobe=min(DEFAULTS["nprobe"], ivf.nlist) if ivf is not None else None,
            k_factor=DEFAULTS["k_factor"] if refine else None,
        )

    # ----- query time -----

    def configure(self, **options) -> "DenseRetriever":
        """ef_search: HNSW candidates per query; nprobe: IVF lists visited per query; k_factor: candidates
        re-ranked exactly per wanted hit (all: higher = better recall, slower)."""
        for name, value in options.items():
            if value is None:
                continue
            if name not in self.SEARCH_OPTIONS:
                what = OPTION_APPLIES_TO.get(name)
                hint = f"; it applies to {what} indexes and this one is {self.manifest.get('factory')!r}" if what else ""
                raise BadInputError(f"dense index has no search option {name!r}{hint}")
            value = check_option(name, value)
            if name == "nprobe":
                for ivf in ivf_parts(self.index):  # one per shard of a sharded index
                    ivf.nprobe = min(value, ivf.nlist)
                value = min(value, ivf_of(self.index).nlist)
            elif name == "k_factor":
                for refine in refine_parts(self.index):
                    refine.k_factor = float(value)
            else:
                for h in hnsw_parts(self.index):  # the index itself, or an IVF's HNSW quantizer
                    h.hnsw.efSearch = value
            setattr(self, name, value)
        return self

    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None,
                          k_factor: int | None = None) -> "DenseRetriever":
        """Same as configure(ef_search=..., nprobe=..., k_factor=...)."""
        return self.configure(ef_search=ef_search, nprobe=nprobe, k_factor=k_factor)

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        check_queries(queries, k)
        q = self.encoder.encode_batch(list(queries))  # (n_queries, dim), one batch
        scores, rows = self.search_vectors(q, k)
        keep = [r >= 0 for r in rows]  # faiss pads with -1 when fewer than k vectors are reachable
        return make_hits(self.store, [r[m] for r, m in zip(rows, keep)], [s[m] for s, m in zip(scores, keep)])

    def search_vectors(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(nq, dim) float32 -> scores (nq, k), rows (nq, k); one FAISS call."""
        k = min(k, max(1, self.index.ntotal))
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def embeddings(self) -> np.ndarray:
        """The passages' (n, dim) float32 vectors, memory-mapped read-only."""
        return load_npy(Path(self.folder) / EMBEDDINGS, kind=KIND)

    # ----- build -----

    @classmethod
    def build(
        cls,
        store: PassageStore,
        out,
        *,
        overwrite: bool = False,
        progress: bool = True,
        encoder: "str | Encoder | None" = None,
        factory: str = DEFAULTS["factory"],
        batch_size: int | None = None,
        device: str = DEFAULTS["device"],
        train_sample: int | None = None,
        chunk_size: int = DEFAULTS["chunk_size"],
        ef_construction: int = DEFAULTS["ef_construction"],
        max_seq_length: int | None = None,
        precision: str = "auto",
        compile: bool = False,
        seed: int = DEFAULTS["seed"],
        embeddings_from: str | os.PathLike | None = None,
        engine: "EngineConfig | None" = None,
    ) -> Path:
        """Encode `store` (or reuse the vectors of the dense index `embeddings_from`) and index them with `factory`.

        engine: None or local without shards: the whole store as one shard, one index (resumable per chunk). The
        ray engine, or engine.shards with either engine: row-range shards encoded and indexed in parallel (resumable
        per shard, and per chunk within a shard), searched shard by shard and merged (rag.retrievers.dense_build)."""
        return build_dense(
            store, out, overwrite=overwrite, progress=progress, encoder=encoder, factory=factory, batch_size=batch_size,
            device=device, train_sample=train_sample, chunk_size=chunk_size, ef_construction=ef_construction,
            max_seq_length=max_seq_length, precision=precision, compile=compile, seed=seed, embeddings_from=embeddings_from,
            engine=engine,
        )

    # ----- load -----

    @classmethod
    def open(cls, folder, passages=None, **options) -> "DenseRetriever":
        """load_index for dense folders, with load options (encoder, device, batch_size, ef_search, nprobe)."""
        from rag.retrievers.base import open_store_for

        folder = Path(folder)
        manifest = read_manifest(folder, kind=KIND)
        return cls.load(folder, manifest, open_store_for(folder, manifest, passages), **options)

    @classmethod
    def load(
        cls,
        folder: Path,
        manifest: dict,
        store: PassageStore,
        *,
        encoder: "str | Encoder | None" = None,
        device: str = "auto",
        batch_size: int | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        k_factor: int | None = None,
    ) -> "DenseRetriever":
        """Open a built folder. `encoder` may only name the encoder it was built with (queries and passages
        must share one embedding space); by default that encoder is loaded from the manifest."""
        folder = Path(folder)
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: dense index format {manifest.get('format')}, this rag reads {FORMAT}; rebuild it")
        check_manifest_files(folder, manifest)
        from rag.retrievers.dense_build import SETTINGS, settings_of

        if SETTINGS in manifest["files"]:  # indexes built before the file existed have only the manifest
            saved = read_json_file(folder / SETTINGS)
            said = settings_of(manifest.get("encoder") or {}, manifest.get("factory"), manifest.get("dim"))
            wrong = sorted(k for k in said if k != "encoder" and said[k] != saved.get(k))
            wrong += sorted(f"encoder.{k}" for k in said["encoder"] if said["encoder"][k] != (saved.get("encoder") or {}).get(k))
            if wrong:
                raise ArtifactError(f"{folder}: the manifest's {', '.join(wrong)} differ from the settings the index "
                                    f"was built with ({SETTINGS}); the manifest was edited. Rebuild the index "
                                    f"(rag index build --kind dense ...) to change them")
        info = manifest["encoder"]
        built_spec = f"{info['backend']}:{info['name']}"
        # queries in the precision the passages were encoded in (fp16 is for GPUs: "auto" picks for this device)
        precision = info.get("precision", "fp32")
        enc = get_encoder(encoder or built_spec, device=device, batch_size=batch_size, max_seq_length=info.get("max_seq_length"),
                          precision="auto" if precision == "fp16" else precision)
        if identity_of(enc.info()) != identity_of(info):
            raise BadInputError(
                f"{folder} was built with encoder {built_spec} ({info['dim']}-d) but the query encoder is "
                f"{enc.spec} ({enc.dim}-d); queries must use the index's encoder: leave the encoder option out, "
                f"or rebuild the index with {enc.spec}"
            )
        index = ShardedIndex.load(folder, manifest["shards"]) if manifest.get("shards") else read_index(folder, INDEX_FILE)
        if index.d != enc.dim or index.d != manifest.get("dim", index.d):
            raise ArtifactError(f"{folder}: the FAISS index holds {index.d}-d vectors but encoder {enc.spec} makes {enc.dim}-d ones; rebuild the index")
        if index.ntotal != len(store):
            raise ArtifactError(f"{folder}: the FAISS index holds {index.ntotal} vectors for {len(store)} passages; rebuild the index")
        return cls(store, index, enc, manifest, folder).configure(ef_search=ef_search, nprobe=nprobe, k_factor=k_factor)

