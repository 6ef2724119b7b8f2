"""Sharded dense builds: encode and index row-range shards in parallel (local or Ray), search shards and merge.

In a sharded dense index folder the manifest's `shards` lists [{file, start, stop, n_vectors}]; file
shards/shard-XXXXX.faiss indexes passage rows [start, stop) (its ids are row - start). embeddings.npy is
the same (n, dim) file as an unsharded build. Build steps, each resumable in `<out>.partial/`:
    encode   a worker per shard encodes its rows -> encode/shard-XXXXX.npy     (encoder loaded once per worker)
    assemble the driver copies the shards into embeddings.npy in row order    (memmap; bounded memory)
    train    IVF/PQ factories only: one training on a seeded sample of all vectors -> trained.faiss, so every
             shard shares the quantizer and merged results equal those of one index with the same nprobe
    index    a worker per shard adds its rows to a copy of the (trained) index -> shards/shard-XXXXX.faiss
A worker holds one shard's texts, vectors and index at a time, so its memory is bounded by the shard size.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from rag.corpus.store import PassageStore, passage_text, read_row_range
from rag.engine import EngineConfig, Shard, ShardLog, ShardWorker, plan_shards, run_shards, save_npy_atomic
from rag.engine.shards import replace_atomic
from rag.errors import ArtifactError, require

log = logging.getLogger(__name__)

ENCODE_DIR = "encode"
INDEX_DIR = "index"
SHARDS_DIR = "shards"
TRAINED = "trained.faiss"


def _faiss():
    return require("faiss", "dense")


class EncodeShard(ShardWorker):
    """Loads the encoder once; per shard: read rows, encode them chunk by chunk, save encode/shard-XXXXX.npy."""

    def __init__(self, passages: str, encoder, encoder_options: dict, out: str, chunk_size: int,
                 resources: dict | None = None):
        """encoder: a spec string (loaded here, on the worker) or, on the local engine, the opened Encoder."""
        super().__init__(resources)
        from rag.encoders import get_encoder

        opts = dict(encoder_options)
        if resources and resources.get("device") == "cuda":
            opts["device"] = "cuda"
        elif resources:
            opts["device"] = "cpu"
        self.encoder = get_encoder(encoder, **opts)
        if resources and resources.get("threads"):
            import torch

            torch.set_num_threads(int(resources["threads"]))  # the encoder's constructor asked for every core
        self.passages, self.out, self.chunk_size = passages, Path(out), chunk_size

    def run(self, shard: Shard) -> dict:
        rows = read_row_range(self.passages, shard.start, shard.stop, ("title", "text"))
        texts = [passage_text(t, x) for t, x in zip(rows["title"], rows["text"])]
        vecs = np.empty((len(texts), self.encoder.dim), np.float32)
        for s in range(0, len(texts), self.chunk_size):
            vecs[s : s + self.chunk_size] = self.encoder.encode_batch(texts[s : s + self.chunk_size])
        save_npy_atomic(self.out / f"{shard.name}.npy", vecs)
        return {"rows": len(texts)}


class IndexShard(ShardWorker):
    """Per shard: add its vectors (rows of embeddings.npy) to a fresh copy of the (trained) index, save it."""

    def __init__(self, folder: str, factory: str, ef_construction: int, chunk_size: int, resources: dict | None = None):
        super().__init__(resources)
        faiss = _faiss()
        if resources and resources.get("threads"):
            faiss.omp_set_num_threads(int(resources["threads"]))
        self.folder, self.factory, self.ef_construction, self.chunk_size = Path(folder), factory, ef_construction, chunk_size

    def run(self, shard: Shard) -> dict:
        from rag.retrievers.dense import EMBEDDINGS, _parts, make_index

        faiss = _faiss()
        emb = np.load(self.folder / EMBEDDINGS, mmap_mode="r")
        trained = self.folder / TRAINED
        index = faiss.read_index(str(trained)) if trained.exists() else make_index(emb.shape[1], self.factory)
        for part in _parts(index):
            if hasattr(part, "hnsw"):
                part.hnsw.efConstruction = int(self.ef_construction)
        for s in range(shard.start, shard.stop, self.chunk_size):
            index.add(np.ascontiguousarray(emb[s : min(s + self.chunk_size, shard.stop)], dtype=np.float32))
        path = self.folder / SHARDS_DIR / f"{shard.name}.faiss"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        faiss.write_index(index, str(tmp))
        replace_atomic(tmp, path)
        return {"n_vectors": int(index.ntotal)}


def build_sharded(store: PassageStore, tmp: Path, *, encoder, encoder_spec: str, encoder_options: dict, factory: str,
                  engine: EngineConfig, chunk_size: int, ef_construction: int, train_sample: int | None, seed: int,
                  progress: bool = True) -> tuple[list[dict], dict, int]:
    """Encode and index `store` in shards into the partial folder `tmp`; returns (shards for the manifest, stats, n_train)."""
    import time

    from rag.engine import engine_session
    from rag.retrievers.dense import EMBEDDINGS, FORMAT, PROGRESS, _ivf, _wipe, make_index

    faiss = _faiss()
    n, dim = len(store), encoder.dim
    if (tmp / PROGRESS).exists():
        _wipe(tmp, "it holds an unsharded (local) encoding")
    plan = plan_shards(n, engine.shards)
    enc_key = {"format": FORMAT, "passages": store.fingerprint, "n_passages": n,
               "encoder": {k: v for k, v in encoder.info().items() if k not in ("libraries", "location")}}
    enc_dir, idx_dir = tmp / ENCODE_DIR, tmp / INDEX_DIR
    for d in (enc_dir, idx_dir, tmp / SHARDS_DIR):
        d.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    uses_gpu = encoder_options.get("device", "auto") != "cpu"
    from tqdm import tqdm

    bar = tqdm(total=n, desc="encode (shards)", unit="passage", file=sys.stderr, disable=not progress)
    with engine_session(engine):
        enc_log = ShardLog(enc_dir, enc_key, plan)
        if len(enc_log.done) < len(plan):
            (tmp / EMBEDDINGS).unlink(missing_ok=True)  # from another build, or assembled before a shard was redone
        elif not (tmp / EMBEDDINGS).exists():
            # a shard whose file is gone (assembled earlier, then the embeddings lost) is encoded again
            for i in [i for i in enc_log.done if not (enc_dir / f"{plan[i].name}.npy").exists()]:
                enc_log.done.pop(i)
        t0 = time.perf_counter()
        stats["rows_encoded_now"] = sum(s.stop - s.start for s in enc_log.pending(plan))
        run_shards(engine, EncodeShard,
                   {"passages": str(store.folder), "encoder": encoder_spec if engine.is_ray else encoder, "encoder_options": encoder_options,
                    "out": str(enc_dir), "chunk_size": chunk_size},
                   plan, enc_log, uses_gpu=uses_gpu, progress=lambda r: bar.update(r["rows"]))
        bar.close()
        stats["encode_seconds"] = time.perf_counter() - t0
        if not (tmp / EMBEDDINGS).exists():
            _assemble(enc_dir, plan, tmp / EMBEDDINGS, n, dim)
        for s in plan:
            (enc_dir / f"{s.name}.npy").unlink(missing_ok=True)
        emb = np.load(tmp / EMBEDDINGS, mmap_mode="r")

        t0 = time.perf_counter()
        index = make_index(dim, factory)
        n_train = 0
        if not index.is_trained:
            from rag.retrievers.dense import default_train_sample

            ivf = _ivf(index)
            n_train = min(train_sample or default_train_sample(n, ivf.nlist if ivf is not None else 0), n)
        idx_key = {**enc_key, "factory": factory, "ef_construction": ef_construction, "train_sample": n_train, "seed": seed}
        idx_log = ShardLog(idx_dir, idx_key, plan)
        if n_train and not (idx_log.done and (tmp / TRAINED).exists()):
            # one training for every shard (shards already indexed keep the quantizer they were built with)
            idx_log.reset()
            rows = np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))
            log.info("training %s on %d of %d vectors", factory, n_train, n)
            index.train(np.ascontiguousarray(emb[rows], dtype=np.float32))
            t = tmp / f".{TRAINED}.tmp"
            faiss.write_index(index, str(t))
            os.replace(t, tmp / TRAINED)
        elif not n_train:
            (tmp / TRAINED).unlink(missing_ok=True)
        done = run_shards(engine, IndexShard,
                          {"folder": str(tmp), "factory": factory, "ef_construction": ef_construction, "chunk_size": chunk_size},
                          plan, idx_log)
        stats["index_seconds"] = time.perf_counter() - t0
    del emb
    shards = []
    for s in plan:
        rec = done[s.index]
        if rec["n_vectors"] != s.stop - s.start:
            raise ArtifactError(f"shard {s.index} indexed {rec['n_vectors']} vectors for rows [{s.start}, {s.stop}); rebuild")
        shards.append({"file": f"{SHARDS_DIR}/{s.name}.faiss", "start": s.start, "stop": s.stop, "n_vectors": rec["n_vectors"]})
    stats["shards"] = {"encode": [_brief(enc_log.done[s.index]) for s in plan], "index": [_brief(done[s.index]) for s in plan]}
    for d in (enc_dir, idx_dir):
        shutil.rmtree(d, ignore_errors=True)
    (tmp / TRAINED).unlink(missing_ok=True)
    return shards, stats, n_train


def _brief(rec: dict) -> dict:
    return {k: rec[k] for k in ("seconds", "worker") if k in rec}


def _assemble(enc_dir: Path, plan: list[Shard], path: Path, n: int, dim: int) -> None:
    """Shard vector files -> one (n, dim) embeddings.npy in row order, written under a temporary name."""
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
        faiss = _faiss()
        out = []
        for s in shards:
            try:
                out.append(faiss.read_index(str(Path(folder) / s["file"])))
            except RuntimeError as e:
                raise ArtifactError(f"{folder}/{s['file']} cannot be read by FAISS ({str(e).strip().splitlines()[-1]}); rebuild the index") from None
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
