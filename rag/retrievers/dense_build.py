"""Building a dense index folder (its layout: rag.retrievers.dense) as plan -> work per shard -> merge (rag.engine).

Steps, each resumable in `<out>.partial/`:
    encode    an EncodeShard worker per shard encodes its rows, chunk by chunk, into encode/shard-XXXXX.npy (a
              memmap); encode/shard-XXXXX.progress.json records the rows finished after each chunk is flushed, so
              an interrupted shard continues from its first unfinished chunk. The encoder is loaded once per worker.
    assemble  the shards' vectors become embeddings.npy in row order (one shard's file is renamed; several are
              copied through a memmap, in bounded memory)
    train     factories that need it (IVF, PQ): one training on a seeded sample of all vectors -> trained.faiss, so
              every shard shares the quantizer and merged results equal those of one index with the same nprobe
    index     an IndexShard worker per shard adds its rows to a copy of the (trained) index -> shards/shard-XXXXX.faiss
The local engine does this as one shard, whose index becomes index.faiss. The ray engine, or engine.shards with
either engine, plans row-range shards (engine.shards of them, default ~50k rows each) and keeps shards/, listed in
the manifest's `shards`. A worker holds one chunk of texts and one shard's index at a time. A partial folder left
by other passages, another encoder or other settings is redone, with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from rag.artifacts import atomic_dir, check_manifest_files, file_digest, file_sizes, load_npy, read_manifest, write_json_atomic, write_manifest
from rag.corpus.store import PassageStore, iter_row_range, passage_text
from rag.encoders import DEFAULT_ENCODER, Encoder, get_encoder
from rag.engine import LOCAL, EngineConfig, Shard, ShardLog, ShardWorker, engine_session, run_shards
from rag.engine.shards import replace_atomic
from rag.errors import ArtifactError, BadInputError
from rag.retrievers.base import passages_field
from rag.retrievers.faiss_index import (
    add_rows, check_fits, check_option, faiss_module, hnsw_parts, ivf_of, make_index, set_build_options, train_index,
    train_sample_size,
)

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "index/dense"
EMBEDDINGS = "embeddings.npy"
INDEX_FILE = "index.faiss"
SHARDS_DIR = "shards"
ENCODE_DIR = "encode"
INDEX_DIR = "index"
TRAINED = "trained.faiss"
SETTINGS = "settings.json"  # encoder identity, precision, dim and factory as built (the manifest's copy is checked)


def settings_of(encoder: dict, factory: str, dim: int) -> dict:
    return {"encoder": {k: encoder.get(k) for k in ("backend", "name", "dim", "normalize", "precision", "max_seq_length")},
            "factory": factory, "dim": dim}


class EncodeShard(ShardWorker):
    """Loads the encoder once; per shard: encode its rows chunk by chunk into encode/shard-XXXXX.npy, resumably."""

    def __init__(self, passages: str, encoder, encoder_options: dict, out: str, chunk_size: int, key: dict,
                 resources: dict | None = None):
        """encoder: a spec string (loaded here, on the worker) or, on the local engine, the opened Encoder.
        key: what the vectors are (passages, encoder), checked before a shard's finished chunks are kept."""
        super().__init__(resources)
        opts = dict(encoder_options)
        if resources and resources.get("device") == "cuda":
            opts["device"] = "cuda"
        elif resources:
            opts["device"] = "cpu"
        self.encoder = get_encoder(encoder, **opts)
        if resources and resources.get("threads"):
            import torch

            torch.set_num_threads(int(resources["threads"]))  # the encoder's constructor asked for every core
        self.passages, self.out, self.chunk_size, self.key = passages, Path(out), chunk_size, key

    def run(self, shard: Shard) -> dict:
        """Reports the rows encoded (those of earlier runs first, at once)."""
        n, dim = shard.stop - shard.start, self.encoder.dim
        path, prog_path = self.out / f"{shard.name}.npy", self.out / f"{shard.name}.progress.json"
        head = {"key": self.key, "start": shard.start, "stop": shard.stop}
        done = _rows_done(path, prog_path, head, (n, dim))
        if done:
            mm = np.load(path, mmap_mode="r+")
            chunks = json.loads(prog_path.read_text(encoding="utf-8"))["chunks"]
            log.warning("resuming the encoding of %s at row %d of %d (earlier chunks are kept)", self.passages,
                        shard.start + done, shard.stop)
            self.report(done)
        else:
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
            chunks = []
            write_json_atomic(prog_path, {**head, "rows_done": 0, "chunks": chunks})
        for first, batch in iter_row_range(self.passages, shard.start + done, shard.stop, self.chunk_size, ("title", "text")):
            texts = [passage_text(t, x) for t, x in zip(batch["title"], batch["text"])]
            vecs = self.encoder.encode_batch(texts)
            if vecs.shape != (len(texts), dim):
                raise RuntimeError(f"encoder {self.encoder.spec} returned shape {vecs.shape} for {len(texts)} texts, "
                                   f"expected (*, {dim})")
            end = first + len(texts)
            mm[first - shard.start : end - shard.start] = vecs
            mm.flush()  # the rows are on disk before the progress file says so
            chunks.append([first, end])
            write_json_atomic(prog_path, {**head, "rows_done": end - shard.start, "chunks": chunks})
            self.report(len(texts))
        del mm
        return {"rows": n, "resumed_from": done}


def _rows_done(path: Path, prog_path: Path, head: dict, shape: tuple[int, int]) -> int:
    """Rows of a shard already encoded by an earlier run of the same build, else 0 (saying why, when it starts over)."""
    if not prog_path.exists():
        return 0
    try:
        prog = json.loads(prog_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        prog = {}
    why = None
    if any(prog.get(k) != v for k, v in head.items()):
        why = "it was started for other passages, another encoder or another version"
    elif not path.exists():
        why = f"{path.name} is missing"
    else:
        mm = np.load(path, mmap_mode="r")
        if mm.shape != shape or mm.dtype != np.float32:
            why = f"{path.name} has shape {mm.shape}, expected {shape}"
        del mm
    if why is not None:
        log.warning("%s: %s; discarding the shard's partial encoding and starting over", path.parent.parent, why)
        return 0
    return int(prog["rows_done"])


class IndexShard(ShardWorker):
    """Per shard: add its vectors (rows of embeddings.npy) to a fresh copy of the (trained) index, save it."""

    def __init__(self, folder: str, factory: str, ef_construction: int, chunk_size: int, resources: dict | None = None):
        super().__init__(resources)
        if resources and resources.get("threads"):
            faiss_module().omp_set_num_threads(int(resources["threads"]))
        self.folder, self.factory, self.ef_construction, self.chunk_size = Path(folder), factory, ef_construction, chunk_size

    def run(self, shard: Shard) -> dict:
        """Reports the vectors added."""
        faiss = faiss_module()
        emb = np.load(self.folder / EMBEDDINGS, mmap_mode="r")
        trained = self.folder / TRAINED
        index = faiss.read_index(str(trained)) if trained.exists() else make_index(emb.shape[1], self.factory)
        set_build_options(index, self.ef_construction)
        add_rows(index, emb, shard.start, shard.stop, self.chunk_size, self.report)
        path = self.folder / SHARDS_DIR / f"{shard.name}.faiss"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        faiss.write_index(index, str(tmp))
        replace_atomic(tmp, path)
        return {"n_vectors": int(index.ntotal)}


def build_dense(store: PassageStore, out, *, overwrite: bool, progress: bool, encoder: "str | Encoder | None", factory: str,
                batch_size: int | None, device: str, train_sample: int | None, chunk_size: int, ef_construction: int,
                max_seq_length: int | None, precision: str, compile: bool, seed: int, embeddings_from,
                engine: EngineConfig | None) -> Path:
    """DenseRetriever.build (which documents the options): plan, encode, assemble, train, index, merge."""
    engine = engine or LOCAL
    out = Path(out)
    check_option("chunk_size", chunk_size)
    check_option("ef_construction", ef_construction)
    if batch_size is not None:
        check_option("batch_size", batch_size)
    if out.exists() and not overwrite:
        raise ArtifactError(f"{out} already exists; pass --overwrite to replace it")
    source = _reuse_source(embeddings_from, store, encoder) if embeddings_from is not None else None
    if source is None:
        enc = get_encoder(encoder or DEFAULT_ENCODER, device=device, batch_size=batch_size, max_seq_length=max_seq_length,
                          precision=precision, compile=compile)
        enc_info, dim = enc.info(), enc.dim
    else:
        enc, enc_info, dim = None, source["encoder"], int(source["encoder"]["dim"])
    # fail on a bad factory / too many IVF lists now, not after hours of encoding
    probe = make_index(dim, factory)
    check_fits(probe, len(store), factory, train_sample)
    if engine.sharded and source is not None:
        raise BadInputError("embeddings_from reuses vectors without encoding; build it with the local engine and no shards")

    n = len(store)
    plan = engine.plan(n)
    key = {"format": FORMAT, "passages": store.fingerprint, "n_passages": n,
           "encoder": {k: v for k, v in enc_info.items() if k not in ("libraries", "location")}}
    inputs = [store.folder, *([embeddings_from] if embeddings_from is not None else [])]
    with atomic_dir(out, overwrite=overwrite, resume=True, kind=KIND, inputs=inputs) as tmp, engine_session(engine):
        if source is None:
            options = {"device": device, "batch_size": batch_size or enc.batch_size, "max_seq_length": max_seq_length,
                       "precision": precision, "compile": compile}
            stats = _encode(store, tmp, enc, {k: v for k, v in options.items() if v is not None}, plan, engine, key,
                            chunk_size, progress)
        else:
            _wipe(tmp, "building from the embeddings of another index")
            _link_or_copy(Path(embeddings_from) / EMBEDDINGS, tmp / EMBEDDINGS)
            stats = {"reused_from": str(embeddings_from)}
        t0 = time.perf_counter()
        n_train, index_records = _index(tmp, plan, engine, dim, factory, key, ef_construction=ef_construction,
                                        train_sample=train_sample, seed=seed, chunk_size=chunk_size, progress=progress)
        stats["index_seconds"] = time.perf_counter() - t0
        stats.setdefault("shards", {})["index"] = [_brief(r) for r in index_records]
        shards = [{"file": f"{SHARDS_DIR}/{s.name}.faiss", "start": s.start, "stop": s.stop, "n_vectors": r["n_vectors"]}
                  for s, r in zip(plan, index_records)]
        if engine.sharded:
            files = [EMBEDDINGS, *(s["file"] for s in shards)]
        else:  # one shard: its index is the index
            os.replace(tmp / shards[0]["file"], tmp / INDEX_FILE)
            files = [EMBEDDINGS, INDEX_FILE]
        # what changes results, kept beside the index too: load refuses a manifest edited to say otherwise
        write_json_atomic(tmp / SETTINGS, settings_of(enc_info, factory, dim))
        files.append(SETTINGS)
        _keep_only(tmp, files)
        ivf = ivf_of(probe)
        write_manifest(
            tmp,
            kind=KIND,
            format=FORMAT,
            libraries=("faiss-cpu", "numpy", "ray") if engine.is_ray else ("faiss-cpu", "numpy"),
            passages=passages_field(store, out),
            encoder=enc_info,
            factory=factory,
            metric="inner_product",
            dim=dim,
            n_vectors=sum(s["n_vectors"] for s in shards),
            train_sample=n_train,
            seed=seed,
            ef_construction=ef_construction if hnsw_parts(probe) else None,
            nlist=int(ivf.nlist) if ivf is not None else None,
            **({"shards": shards} if engine.sharded else {}),
            engine=engine.as_dict(),
            build={"batch_size": getattr(enc, "batch_size", None), "device": getattr(enc, "device", None),
                   "compile": getattr(enc, "compiled", False), "chunk_size": chunk_size, **stats},
            embeddings={"file": EMBEDDINGS, "dtype": "float32", "shape": [n, dim], "bytes": (tmp / EMBEDDINGS).stat().st_size},
            files=file_sizes(tmp, files),
        )
    return out


def _encode(store: PassageStore, tmp: Path, enc: Encoder, options: dict, plan: list[Shard], engine: EngineConfig, key: dict,
            chunk_size: int, progress: bool) -> dict:
    """Encode every shard not done into tmp/encode/, then assemble tmp/embeddings.npy; returns the build stats."""
    from tqdm import tqdm

    enc_dir = tmp / ENCODE_DIR
    enc_dir.mkdir(parents=True, exist_ok=True)
    enc_log = ShardLog(enc_dir, key, plan)
    if enc_log.pending(plan):
        (tmp / EMBEDDINGS).unlink(missing_ok=True)  # from another build, or assembled before a shard was redone
    elif not (tmp / EMBEDDINGS).exists():
        # a shard whose file is gone (assembled earlier, then the embeddings lost) is encoded again
        for i in [i for i in enc_log.done if not (enc_dir / f"{plan[i].name}.npy").exists()]:
            enc_log.done.pop(i)
    todo = enc_log.pending(plan)
    earlier = len(store) - sum(s.stop - s.start for s in todo)  # rows of shards finished by an earlier run
    spec = enc.spec if enc.backend != "hash" else f"hash:{enc.dim}"
    t0 = time.perf_counter()
    with tqdm(total=len(store), initial=earlier, desc="encode", unit="passage", disable=not progress, file=sys.stderr,
              smoothing=0.1) as bar:
        done = run_shards(engine, EncodeShard,
                          {"passages": str(store.folder), "encoder": spec if engine.is_ray else enc, "encoder_options": options,
                           "out": str(enc_dir), "chunk_size": chunk_size, "key": key},
                          plan, enc_log, uses_gpu=options.get("device", "auto") != "cpu", progress=bar.update)
    seconds = time.perf_counter() - t0
    if not (tmp / EMBEDDINGS).exists():
        _assemble(enc_dir, plan, tmp / EMBEDDINGS, len(store), enc.dim)
    resumed = earlier + sum(done[s.index]["resumed_from"] for s in todo)
    return {"resumed_from": resumed, "rows_encoded_now": len(store) - resumed, "encode_seconds": seconds,
            "passages_per_s": (len(store) - resumed) / seconds if seconds > 0 else None,
            "shards": {"encode": [_brief(done[s.index]) for s in plan]}}


def _assemble(enc_dir: Path, plan: list[Shard], path: Path, n: int, dim: int) -> None:
    """Shard vector files -> one (n, dim) embeddings.npy in row order; one shard's file is renamed, several are
    copied under a temporary name."""
    if len(plan) == 1:
        os.replace(enc_dir / f"{plan[0].name}.npy", path)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for s in plan:
        part = np.load(enc_dir / f"{s.name}.npy", mmap_mode="r")
        if part.shape != (s.stop - s.start, dim):
            raise ArtifactError(f"{enc_dir}/{s.name}.npy has shape {part.shape}, expected {(s.stop - s.start, dim)}")
        mm[s.start : s.stop] = part
    mm.flush()
    del mm
    os.replace(tmp, path)


def _index(tmp: Path, plan: list[Shard], engine: EngineConfig, dim: int, factory: str, key: dict, *, ef_construction: int,
           train_sample: int | None, seed: int, chunk_size: int, progress: bool) -> tuple[int, list[dict]]:
    """Train (once, when the factory needs it), then index every shard not done into tmp/shards/; returns
    (training vectors, each shard's record in plan order)."""
    from tqdm import tqdm

    idx_dir = tmp / INDEX_DIR
    for d in (idx_dir, tmp / SHARDS_DIR):
        d.mkdir(parents=True, exist_ok=True)
    emb = load_npy(tmp / EMBEDDINGS, kind=KIND)
    n = len(emb)
    index = make_index(dim, factory)
    set_build_options(index, ef_construction)
    n_train = train_sample_size(index, n, train_sample)
    idx_log = ShardLog(idx_dir, {**key, "factory": factory, "ef_construction": ef_construction, "train_sample": n_train,
                                 "seed": seed}, plan)
    for i in [i for i in idx_log.done if not (tmp / SHARDS_DIR / f"{plan[i].name}.faiss").exists()]:
        idx_log.done.pop(i)
    if n_train and not (idx_log.done and (tmp / TRAINED).exists()):
        # one training for every shard (shards already indexed keep the quantizer they were built with)
        idx_log.reset()
        train_index(index, emb, factory, n_train, seed)
        t = tmp / f".{TRAINED}.tmp"
        faiss_module().write_index(index, str(t))
        replace_atomic(t, tmp / TRAINED)
    elif not n_train:
        (tmp / TRAINED).unlink(missing_ok=True)
    del emb
    todo = idx_log.pending(plan)
    with tqdm(total=n, initial=n - sum(s.stop - s.start for s in todo), desc=f"add {factory}", unit="vector",
              disable=not progress, file=sys.stderr) as bar:
        done = run_shards(engine, IndexShard,
                          {"folder": str(tmp), "factory": factory, "ef_construction": ef_construction, "chunk_size": chunk_size},
                          plan, idx_log, progress=bar.update)
    for s in plan:
        if done[s.index]["n_vectors"] != s.stop - s.start:
            raise ArtifactError(f"shard {s.index} indexed {done[s.index]['n_vectors']} vectors for rows "
                                f"[{s.start}, {s.stop}); rebuild")
    return n_train, [done[s.index] for s in plan]


def _brief(rec: dict) -> dict:
    return {k: rec[k] for k in ("seconds", "worker") if k in rec}


def _keep_only(folder: Path, files: list[str]) -> None:
    """Remove everything in `folder` but `files` (paths relative to it): work files, leftovers of older builds."""
    keep = set(files)
    for p in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # a folder's files before it
        if p.is_dir():
            if not any(p.iterdir()):
                p.rmdir()
        elif p.relative_to(folder).as_posix() not in keep:
            p.unlink()


def _wipe(folder: Path, why: str) -> None:
    if any(folder.iterdir()):
        log.warning("%s: %s; discarding the partial build and starting over", folder, why)
        for p in folder.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _reuse_source(path, store: PassageStore, encoder) -> dict:
    """The manifest of a dense index whose embeddings a new build may reuse (same passages, same encoder)."""
    path = Path(path)
    manifest = read_manifest(path, kind=KIND, format=FORMAT)
    check_manifest_files(path, manifest)
    want = (manifest.get("hashes") or {}).get(EMBEDDINGS)
    if want is None:
        log.warning("%s: no hash recorded for %s (built before hashed manifests); reusing it checked by size only",
                    path, EMBEDDINGS)
    elif file_digest(path / EMBEDDINGS)["sha256"] != want["sha256"]:  # every byte is reused, so every byte is checked
        raise ArtifactError(f"{path / EMBEDDINGS}: sha256 differs from the one recorded at build time (damaged); "
                            f"rebuild {path} (rag index build --kind dense ...) before reusing its embeddings")
    emb = load_npy(path / EMBEDDINGS, kind=KIND)  # a damaged header is refused before anything is built
    if emb.shape != (manifest["n_vectors"], manifest["dim"]) or emb.dtype != np.float32:
        raise ArtifactError(f"{path / EMBEDDINGS}: holds {emb.dtype} {emb.shape}, the manifest says float32 "
                            f"({manifest['n_vectors']}, {manifest['dim']}); rebuild {path}")
    del emb
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
