"""Dense retrieval: sentence embeddings of each passage, searched with a FAISS index (inner product).

Index folder, format 1:
    manifest.json   kind "index/dense"; passages {path, fingerprint, n_passages}; encoder {backend, name,
                    location, dim, normalize, max_seq_length, libraries}; factory; metric; train_sample; files
    embeddings.npy  float32 (n_passages, dim), row i = passage row i, L2-normalized (so inner product = cosine);
                    kept so other FAISS factories can be built later without re-encoding (`embeddings_from`)
    index.faiss     faiss.write_index of the index made by faiss.index_factory(dim, factory, METRIC_INNER_PRODUCT)
    shards/         instead of index.faiss when built in shards (--exec-engine ray, or --shards N): one index per
                    row range, listed in the manifest's `shards` and searched as one (rag.retrievers.dense_shards)

Builds resume: the embeddings are written chunk by chunk into `<out>.partial/embeddings.npy` (a memmap), and
`<out>.partial/encode_progress.json` records how many rows are finished after each chunk is flushed. A rebuild
with the same passages and encoder continues from the first unfinished chunk; a partial folder from other
passages or another encoder is discarded (with a warning).

Build options (BUILD_OPTIONS): encoder, factory, batch_size, device, precision, compile, max_seq_length,
chunk_size, train_sample, ef_construction, seed, embeddings_from (reuse another dense index's vectors); the
`engine` argument (rag.engine.EngineConfig) chooses where encoding and indexing run.
Query options (configure / set_search_params / load kwargs): ef_search (HNSW), nprobe (IVF), k_factor
(indexes with an exact re-rank stage, factory "...,RFlat" or "...,Refine(...)": candidates re-ranked = k_factor * k).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rag.artifacts import atomic_dir, check_files, file_sizes, read_manifest, write_json_atomic, write_manifest
from rag.corpus.store import PassageStore, passage_text
from rag.encoders import DEFAULT_ENCODER, Encoder, get_encoder, identity_of
from rag.errors import ArtifactError, BadInputError, require
from rag.retrievers.base import INDEXES, Retriever, check_queries, make_hits, passages_field
from rag.types import Hit

if TYPE_CHECKING:  # pragma: no cover
    from rag.engine import EngineConfig

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "index/dense"
EMBEDDINGS = "embeddings.npy"
INDEX_FILE = "index.faiss"
PROGRESS = "encode_progress.json"
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


def default_train_sample(n: int, nlist: int) -> int:
    """Vectors to train IVF/PQ on: 40 per list (faiss warns below 39), at least 50k, at most n."""
    return min(n, max(40 * nlist, 50_000))


def _faiss():
    return require("faiss", "dense")


def make_index(dim: int, factory: str):
    """faiss.index_factory with inner product; a bad factory string is the user's error, said before encoding."""
    faiss = _faiss()
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


def _parts(index) -> list:
    """The index and the indexes nested in it (pre-transform, refine, IVF quantizer), downcast to their classes."""
    from rag.retrievers.dense_shards import ShardedIndex

    faiss = _faiss()
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


def _ivf(index):
    return next(iter(_ivfs(index)), None)


def _ivfs(index) -> list:
    faiss = _faiss()
    return [p for p in _parts(index) if isinstance(p, faiss.IndexIVF)]


def _hnsw_parts(index) -> list:
    return [p for p in _parts(index) if hasattr(p, "hnsw")]


def _refines(index) -> list:
    faiss = _faiss()
    return [p for p in _parts(index) if isinstance(p, faiss.IndexRefine)]


def _wipe(folder: Path, why: str) -> None:
    if any(folder.iterdir()):
        log.warning("%s: %s; discarding the partial build and starting over", folder, why)
        for p in folder.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def encode_resumable(
    store: PassageStore, encoder: Encoder, folder: Path, chunk_size: int, progress: bool = True
) -> tuple[np.memmap, dict]:
    """Encode every passage into folder/embeddings.npy, resuming after the last finished chunk.

    Returns the (n, dim) float32 memmap and {"rows_encoded_now", "resumed_from", "seconds"}.
    """
    from tqdm import tqdm

    n, dim = len(store), encoder.dim
    key = {
        "format": FORMAT,
        "passages": store.fingerprint,
        "n_passages": n,
        "encoder": {k: v for k, v in encoder.info().items() if k not in ("libraries", "location")},
    }
    emb_path, prog_path = folder / EMBEDDINGS, folder / PROGRESS
    done = 0
    if prog_path.exists():
        try:
            prog = json.loads(prog_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            prog = {}
        if prog.get("key") != key:
            _wipe(folder, "it was started for other passages, another encoder or another version")
        elif not emb_path.exists():
            _wipe(folder, f"{EMBEDDINGS} is missing")
        else:
            done = int(prog["rows_done"])
    else:
        _wipe(folder, "it has no encoding progress record")
    if done:
        mm = np.load(emb_path, mmap_mode="r+")
        if mm.shape != (n, dim) or mm.dtype != np.float32:
            shape = mm.shape
            del mm
            _wipe(folder, f"{EMBEDDINGS} has shape {shape}, expected {(n, dim)}")
            done = 0
        else:
            log.warning("resuming the encoding of %s at row %d of %d (earlier chunks are kept)", store.folder, done, n)
    if not done:
        mm = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, dim))
        write_json_atomic(prog_path, {"key": key, "rows_done": 0, "chunks": []})
    chunks = json.loads(prog_path.read_text(encoding="utf-8")).get("chunks", [])
    t0, resumed_from = time.perf_counter(), done
    with tqdm(total=n, initial=done, desc="encode", unit="passage", disable=not progress, file=sys.stderr, smoothing=0.1) as bar:
        for start, batch in store.iter_batches(batch_size=chunk_size, columns=("title", "text"), start=done):
            texts = [passage_text(t, x) for t, x in zip(batch["title"], batch["text"])]
            vecs = encoder.encode_batch(texts)
            if vecs.shape != (len(texts), dim):
                raise RuntimeError(f"encoder {encoder.spec} returned shape {vecs.shape} for {len(texts)} texts, expected (*, {dim})")
            end = start + len(texts)
            mm[start:end] = vecs
            mm.flush()  # the rows are on disk before the progress file says so
            chunks.append([start, end])
            write_json_atomic(prog_path, {"key": key, "rows_done": end, "chunks": chunks})
            bar.update(len(texts))
    seconds = time.perf_counter() - t0
    stats = {"resumed_from": resumed_from, "rows_encoded_now": n - resumed_from, "seconds": seconds,
             "passages_per_s": (n - resumed_from) / seconds if seconds > 0 else None}
    return mm, stats


def build_faiss(
    embeddings: np.ndarray,
    factory: str,
    *,
    ef_construction: int = DEFAULTS["ef_construction"],
    train_sample: int | None = None,
    seed: int = DEFAULTS["seed"],
    chunk_size: int = DEFAULTS["chunk_size"],
    progress: bool = True,
):
    """(n, dim) float32 (may be a memmap) -> (trained, filled FAISS index, number of training vectors)."""
    from tqdm import tqdm

    n, dim = embeddings.shape
    index = make_index(dim, factory)
    _check_fits(index, n, factory, train_sample)
    for part in _parts(index):
        if hasattr(part, "hnsw"):
            part.hnsw.efConstruction = int(ef_construction)
        if hasattr(part, "do_polysemous_training"):
            # index_factory turns on polysemous code reordering for 8-bit PQ; it only serves Hamming-filtered
            # search (unused here) and makes training ~60x slower
            part.do_polysemous_training = False
    n_train = 0
    if not index.is_trained:
        ivf = _ivf(index)
        n_train = train_sample or default_train_sample(n, ivf.nlist if ivf is not None else 0)
        n_train = min(n_train, n)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=n_train, replace=False))  # sorted: sequential reads of the memmap
        log.info("training %s on %d of %d vectors", factory, n_train, n)
        try:
            index.train(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
        except RuntimeError as e:
            raise BadInputError(f"FAISS could not train {factory!r} on {n_train} vectors: {str(e).strip().splitlines()[-1]}") from None
    with tqdm(total=n, desc=f"add {factory}", unit="vector", disable=not progress, file=sys.stderr) as bar:
        for s in range(0, n, chunk_size):
            block = np.ascontiguousarray(embeddings[s : s + chunk_size], dtype=np.float32)
            index.add(block)
            bar.update(len(block))
    return index, n_train


def _check_fits(index, n: int, factory: str, train_sample: int | None) -> None:
    """Refuse, before any encoding, an IVF index with more lists than vectors to train them."""
    ivf = _ivf(index)
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


def _check_int(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


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
        hnsw, ivf, refine = _hnsw_parts(index), _ivf(index), _refines(index)
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
            value = _check_int(name, value)
            if name == "nprobe":
                for ivf in _ivfs(self.index):  # one per shard of a sharded index
                    ivf.nprobe = min(value, ivf.nlist)
                value = min(value, _ivf(self.index).nlist)
            elif name == "k_factor":
                for refine in _refines(self.index):
                    refine.k_factor = float(value)
            else:
                for h in _hnsw_parts(self.index):  # the index itself, or an IVF's HNSW quantizer
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
        return np.load(Path(self.folder) / EMBEDDINGS, mmap_mode="r")

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

        engine: None or local without shards: one encoding pass and one index (resumable per chunk). The ray
        engine, or engine.shards with either engine: encode and index row-range shards in parallel (resumable
        per shard; rag.retrievers.dense_shards), searched shard by shard and merged."""
        from rag.engine import LOCAL

        engine = engine or LOCAL
        sharded = engine.is_ray or engine.shards is not None
        faiss = _faiss()
        out = Path(out)
        _check_int("chunk_size", chunk_size)
        _check_int("ef_construction", ef_construction)
        if batch_size is not None:
            _check_int("batch_size", batch_size)
        if out.exists() and not overwrite:
            raise ArtifactError(f"{out} already exists; pass --overwrite to replace it")
        source = _reuse_source(embeddings_from, store, encoder) if embeddings_from is not None else None
        if source is None:
            enc = get_encoder(
                encoder or DEFAULT_ENCODER, device=device, batch_size=batch_size, max_seq_length=max_seq_length,
                precision=precision, compile=compile,
            )
            enc_info, dim = enc.info(), enc.dim
        else:
            enc, enc_info, dim = None, source["encoder"], int(source["encoder"]["dim"])
        # fail on a bad factory / too many IVF lists now, not after hours of encoding
        _check_fits(make_index(dim, factory), len(store), factory, train_sample)

        if sharded and source is not None:
            raise BadInputError("embeddings_from reuses vectors without encoding; build it with the local engine and no shards")
        with atomic_dir(out, overwrite=overwrite, resume=True) as tmp:
            if sharded:
                return cls._build_sharded(store, out, tmp, enc, engine, factory=factory, chunk_size=chunk_size,
                                          ef_construction=ef_construction, train_sample=train_sample, seed=seed,
                                          progress=progress, options={"device": device, "batch_size": batch_size,
                                          "max_seq_length": max_seq_length, "precision": precision, "compile": compile})
            if source is None:
                emb, stats = encode_resumable(store, enc, tmp, chunk_size, progress)
            else:
                _wipe(tmp, "building from the embeddings of another index")
                _link_or_copy(Path(embeddings_from) / EMBEDDINGS, tmp / EMBEDDINGS)
                emb = np.load(tmp / EMBEDDINGS, mmap_mode="r")
                stats = {"reused_from": str(embeddings_from)}
            t0 = time.perf_counter()
            index, n_train = build_faiss(
                emb, factory, ef_construction=ef_construction, train_sample=train_sample, seed=seed,
                chunk_size=chunk_size, progress=progress,
            )
            stats["index_seconds"] = time.perf_counter() - t0
            faiss.write_index(index, str(tmp / INDEX_FILE))
            del emb
            (tmp / PROGRESS).unlink(missing_ok=True)
            ivf = _ivf(index)
            write_manifest(
                tmp,
                kind=KIND,
                format=FORMAT,
                libraries=("faiss-cpu", "numpy"),
                passages=passages_field(store),
                encoder=enc_info,
                factory=factory,
                metric="inner_product",
                dim=dim,
                n_vectors=int(index.ntotal),
                train_sample=n_train,
                seed=seed,
                ef_construction=ef_construction if _hnsw_parts(index) else None,
                nlist=int(ivf.nlist) if ivf is not None else None,
                build={"batch_size": getattr(enc, "batch_size", None), "device": getattr(enc, "device", None),
                       "compile": getattr(enc, "compiled", False), "chunk_size": chunk_size, **stats},
                embeddings={"file": EMBEDDINGS, "dtype": "float32", "shape": [len(store), dim],
                            "bytes": (tmp / EMBEDDINGS).stat().st_size},
                files=file_sizes(tmp, [EMBEDDINGS, INDEX_FILE]),
            )
        return out

    @classmethod
    def _build_sharded(cls, store, out, tmp, enc, engine, *, factory, chunk_size, ef_construction, train_sample, seed,
                       progress, options) -> Path:
        from rag.retrievers.dense_shards import build_sharded

        options = {k: v for k, v in options.items() if v is not None}
        options["batch_size"] = options.get("batch_size") or enc.batch_size
        spec = enc.spec if enc.backend != "hash" else f"hash:{enc.dim}"
        shards, stats, n_train = build_sharded(
            store, tmp, encoder=enc, encoder_spec=spec, encoder_options=options, factory=factory, engine=engine,
            chunk_size=chunk_size, ef_construction=ef_construction, train_sample=train_sample, seed=seed, progress=progress,
        )
        files = [EMBEDDINGS, *(s["file"] for s in shards)]
        ivf_nlist = None
        if n_train:
            ivf_nlist = int(_ivf(make_index(enc.dim, factory)).nlist)
        write_manifest(
            tmp,
            kind=KIND,
            format=FORMAT,
            libraries=("faiss-cpu", "numpy", "ray") if engine.is_ray else ("faiss-cpu", "numpy"),
            passages=passages_field(store),
            encoder=enc.info(),
            factory=factory,
            metric="inner_product",
            dim=enc.dim,
            n_vectors=len(store),
            train_sample=n_train,
            seed=seed,
            ef_construction=ef_construction if "HNSW" in factory else None,
            nlist=ivf_nlist,
            shards=shards,
            engine=engine.as_dict(),
            build={"batch_size": options["batch_size"], "device": options.get("device"), "compile": bool(options.get("compile")),
                   "chunk_size": chunk_size, **stats},
            embeddings={"file": EMBEDDINGS, "dtype": "float32", "shape": [len(store), enc.dim],
                        "bytes": (tmp / EMBEDDINGS).stat().st_size},
            files=file_sizes(tmp, files),
        )
        return out

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
        faiss = _faiss()
        folder = Path(folder)
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: dense index format {manifest.get('format')}, this rag reads {FORMAT}; rebuild it")
        check_files(folder, manifest["files"])
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
        if manifest.get("shards"):
            from rag.retrievers.dense_shards import ShardedIndex

            index = ShardedIndex.load(folder, manifest["shards"])
        else:
            try:
                index = faiss.read_index(str(folder / INDEX_FILE))
            except RuntimeError as e:
                raise ArtifactError(f"{folder}/{INDEX_FILE} cannot be read by FAISS ({str(e).strip().splitlines()[-1]}); rebuild the index") from None
        if index.d != enc.dim or index.d != manifest.get("dim", index.d):
            raise ArtifactError(f"{folder}: the FAISS index holds {index.d}-d vectors but encoder {enc.spec} makes {enc.dim}-d ones; rebuild the index")
        if index.ntotal != len(store):
            raise ArtifactError(f"{folder}: the FAISS index holds {index.ntotal} vectors for {len(store)} passages; rebuild the index")
        return cls(store, index, enc, manifest, folder).configure(ef_search=ef_search, nprobe=nprobe, k_factor=k_factor)


def _reuse_source(path, store: PassageStore, encoder) -> dict:
    """The manifest of a dense index whose embeddings a new build may reuse (same passages, same encoder)."""
    path = Path(path)
    manifest = read_manifest(path, kind=KIND, format=FORMAT)
    check_files(path, manifest["files"])
    if manifest["passages"]["fingerprint"] != store.fingerprint:
        raise BadInputError(f"{path} was built over other passages ({manifest['passages']['path']}); its embeddings cannot be reused for {store.folder}")
    if encoder is not None:
        spec = encoder.spec if isinstance(encoder, Encoder) else encoder
        from rag.encoders import parse_spec, resolve_model

        backend, model = parse_spec(spec) if isinstance(spec, str) else (None, None)
        name = resolve_model(model).name if backend == "sentence-transformers" else model
        if (backend, name) != (manifest["encoder"]["backend"], manifest["encoder"]["name"]):
            raise BadInputError(f"{path} holds embeddings from encoder {manifest['encoder']['name']}, not {spec}; leave the encoder option out to reuse them")
    return manifest


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when both are on one filesystem (no extra disk), else copy; the source stays read-only for us."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
