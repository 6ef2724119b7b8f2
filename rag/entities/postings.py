"""Entity -> document postings of a linked corpus, in CSR form, memory-mapped.

Documents are articles (distinct doc_id, the paper's unit) or passages (rows of the passage store).
Every passage is linked as its text plus, with include_title, its article's own entity (the title names
the article's subject even where the text says "he" or "the city").

Folder layout (format 1):
    indptr.npy     int64 (n_entities + 1,)   docs of entity i are docs[indptr[i] : indptr[i + 1]]
    docs.npy       int32 (n_pairs,)          sorted, unique within each entity
    entities.txt   one label per line        entity i (only entities with at least one document)
    doc_ids.txt    one doc_id per line       document j when unit == "articles" (passages: j = store row)
    manifest.json  kind "postings", unit, passages {path, fingerprint, n_passages}, linker identity, counts

Building is plan -> work per shard -> merge (rag.engine). A shard is a row range of the store. A LinkShard
worker builds the linker's automaton once, then links each of its shards one parquet row group at a time
(on the local engine over forked processes, which share the automaton) and writes the sorted unique
(entity << 32 | doc) keys in runs, spilling one whenever more than `spill_pairs` pairs are pending, so corpora
larger than memory work. The driver merges the runs of every shard by entity range (a single run is used as
is), so the postings are the same byte for byte whatever the engine and the shards. The local engine links the
whole store as one shard; the ray engine (or engine.shards) links row-range shards, resumably.

Work folder (inside `<out>.partial/`, removed when the postings are written):
    link/doc_of_row.npy             int64 (n_passages,)  document number of each passage row (articles or rows)
    link/shard-XXXXX.run-YYYY.npy   int64 sorted unique keys: run YYYY of shard XXXXX
    link/shard-XXXXX.labels.json    free-form linkers (one shard only): the labels its entity ids stand for
    link/shards_done.json           finished shards (rag.engine.shards)
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.artifacts import atomic_dir, check_manifest_files, file_sha256, file_sizes, read_manifest, write_json_atomic, write_manifest
from rag.corpus.store import FILE as PASSAGES_FILE
from rag.corpus.store import PassageStore
from rag.engine import LOCAL, EngineConfig, Shard, ShardLog, ShardWorker, engine_session, run_shards, save_npy_atomic
from rag.entities.linkers import EntityLinker, LexiconLinker
from rag.errors import ArtifactError, BadInputError

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "postings"
UNITS = ("articles", "passages")
WORK = "link"
DOC_OF_ROW = "doc_of_row.npy"
_W: dict = {}  # state of the forked linking processes, set in the worker before forking
_EMPTY = np.zeros(0, np.int32)


class Postings:
    """Read side: documents of an entity as a sorted int32 array (a view of the memory-mapped file)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.exists():
            raise ArtifactError(f"postings {self.folder} do not exist; build them with `rag counts postings` or `rag counts build`")
        self.manifest = read_manifest(self.folder, kind=KIND, format=FORMAT)
        check_manifest_files(self.folder, self.manifest)
        self.unit: str = self.manifest["unit"]
        # plain ndarray views of the memory maps: slicing a np.memmap object is several times slower
        self.indptr = np.load(self.folder / "indptr.npy", mmap_mode="r").view(np.ndarray)
        self.docs = np.load(self.folder / "docs.npy", mmap_mode="r").view(np.ndarray)
        if len(self.indptr) != self.manifest["n_entities"] + 1 or self.indptr[-1] != len(self.docs):
            raise ArtifactError(f"{self.folder}: indptr/docs sizes disagree with the manifest; rebuild the postings")
        self._labels: list[str] | None = None
        self._row: dict[str, int] | None = None

    @classmethod
    def open(cls, folder, store: PassageStore | None = None, linker: EntityLinker | None = None) -> "Postings":
        """Open and check that the postings belong to `store` and were made by `linker` (when given)."""
        p = cls(folder)
        if store is not None:
            p.check_store(store)
        if linker is not None:
            p.check_linker(linker)
        return p

    def check_store(self, store: PassageStore) -> None:
        info = self.manifest["passages"]
        if info["fingerprint"] != store.fingerprint:
            raise ArtifactError(
                f"postings {self.folder} were built from passages {info['path']} (fingerprint {info['fingerprint']}), "
                f"not from {store.folder} ({store.fingerprint}); rebuild them over these passages"
            )

    def check_linker(self, linker: EntityLinker) -> None:
        want, have = self.manifest["linker"], linker.identity()
        if want != have:
            raise ArtifactError(f"postings {self.folder} were linked with {want}, but the linker now is {have}; rebuild the postings or use the same lexicon and options")

    @property
    def n_entities(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_docs(self) -> int:
        return int(self.manifest["n_docs"])

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            with open(self.folder / "entities.txt", encoding="utf-8") as f:
                self._labels = f.read().split("\n")[:-1]
            if len(self._labels) != self.n_entities:
                raise ArtifactError(f"{self.folder}/entities.txt has {len(self._labels)} labels, expected {self.n_entities}; rebuild")
        return self._labels

    def row(self, label: str) -> int | None:
        if self._row is None:
            self._row = {lab: i for i, lab in enumerate(self.labels)}
        return self._row.get(label)

    def docs_of(self, label: str) -> np.ndarray:
        r = self.row(label)
        if r is None:
            return _EMPTY
        return self.docs[self.indptr[r] : self.indptr[r + 1]]

    def doc_count(self, label: str) -> int:
        r = self.row(label)
        return 0 if r is None else int(self.indptr[r + 1] - self.indptr[r])

    def doc_ids(self) -> list[str]:
        if self.unit != "articles":
            raise BadInputError("passage-level postings have no doc_ids.txt: document j is passage row j")
        with open(self.folder / "doc_ids.txt", encoding="utf-8") as f:
            return f.read().split("\n")[:-1]


def _documents(store: PassageStore, unit: str) -> tuple[np.ndarray, list[str] | None]:
    """(document number of every passage row, doc_id of every document or None for passage units): articles
    are numbered in order of first appearance, passages by row."""
    if unit == "passages":
        return np.arange(len(store), dtype=np.int64), None
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(store.table.column("doc_id")).combine_chunks()
    return enc.indices.to_numpy().astype(np.int64), enc.dictionary.to_pylist()


def doc_of_row(store: PassageStore, unit: str) -> np.ndarray:
    """Document number of every passage row, as postings over `store` number them."""
    return _documents(store, unit)[0]


def intersect_count(a: np.ndarray, b: np.ndarray) -> int:
    """|a ∩ b| for sorted unique int arrays: binary search of the shorter in the longer."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) == 0:
        return 0
    idx = np.searchsorted(b, a)
    idx[idx == len(b)] = len(b) - 1
    return int(np.count_nonzero(b[idx] == a))


# --- building --------------------------------------------------------------------------------------------


def _title_ids(linker: EntityLinker, titles: Sequence[str]):
    """Entity of each distinct title: a lexicon id (fixed-vocabulary linkers) or the title as a label."""
    lexicon = getattr(linker, "lexicon", None) or getattr(getattr(linker, "base", None), "lexicon", None)
    if linker.vocabulary is not None and lexicon is not None:
        return lexicon.entity_ids([t or "" for t in titles])
    out = np.empty(len(titles), dtype=object)
    out[:] = [t or None for t in titles]
    return out


def _link_rows(linker: EntityLinker, texts: list[str], titles: list[str] | None, docs: np.ndarray, chunk: int):
    """Linked (entity, doc) pairs of some rows, unique: int64 keys (vocab ids) or (labels, docs)."""
    ents, dd = [], []
    for i in range(0, len(texts), chunk):
        t_idx, e = linker.link_entities(texts[i : i + chunk])
        ents.append(e)
        dd.append(docs[i + t_idx] if len(t_idx) else np.zeros(0, np.int64))
    if titles is not None:
        uniq, inv = np.unique(np.asarray(titles, dtype=object), return_inverse=True)
        tid = _title_ids(linker, list(uniq))[inv]
        has = np.array([x is not None and x != -1 for x in tid], dtype=bool) if tid.dtype == object else tid >= 0
        ents.append(tid[has])
        dd.append(docs[np.flatnonzero(has)])
    e = np.concatenate(ents) if ents else np.zeros(0, np.int64)
    d = np.concatenate(dd).astype(np.int64) if dd else np.zeros(0, np.int64)
    if linker.vocabulary is not None:
        return np.unique((e.astype(np.int64) << 32) | d)
    pairs = sorted(set(zip(e.tolist(), d.tolist())))
    return [p[0] for p in pairs], np.asarray([p[1] for p in pairs], np.int64)


def _link_group(task: tuple[int, int, int, int]):
    """(rows linked, their keys or (labels, docs)) for rows [lo, hi) of row group `group`, which starts at row
    `first`; run in forked pool processes (or in the worker itself) with the state in _W."""
    import pyarrow.parquet as pq

    group, first, lo, hi = task
    pf = pq.ParquetFile(_W["path"], memory_map=True)
    cols = ["text", "title"] if _W["include_title"] else ["text"]
    t = pf.read_row_group(group, columns=cols).to_pydict()
    if (lo, hi) != (0, len(t["text"])):
        t = {k: v[lo:hi] for k, v in t.items()}
    docs = np.asarray(_W["doc_of_row"][first + lo : first + hi])
    return hi - lo, _link_rows(_W["linker"], t["text"], t.get("title"), docs, _W["chunk"])


def _groups(path: Path, shard: Shard) -> list[tuple[int, int, int, int]]:
    """(row group, its first row, lo, hi): the part [lo, hi) of each row group that lies in the shard."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    out, row = [], 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        lo, hi = max(shard.start, row), min(shard.stop, row + n)
        if lo < hi:
            out.append((g, row, lo - row, hi - row))
        row += n
    return out


class LinkShard(ShardWorker):
    """Links the rows of a shard into sorted key runs (see the module docstring); `processes` > 1 forks that many
    processes per shard, after the automaton is built, so they share it."""

    def __init__(self, linker: EntityLinker, passages: str, work: str, include_title: bool, chunk: int, processes: int,
                 spill_pairs: int, resources: dict | None = None):
        super().__init__(resources)
        for lk in (linker, getattr(linker, "base", None)):
            if isinstance(lk, LexiconLinker):
                lk.automaton  # built once per worker
                lk.lexicon.entity_id("")
        self.linker, self.path, self.work = linker, Path(passages) / PASSAGES_FILE, Path(work)
        self.include_title, self.chunk, self.processes, self.spill_pairs = include_title, chunk, processes, spill_pairs
        self.doc_of_row = np.load(self.work / DOC_OF_ROW, mmap_mode="r")

    def run(self, shard: Shard) -> dict:
        """Reports the rows linked, per row group."""
        tasks = _groups(self.path, shard)
        fixed_vocab = self.linker.vocabulary is not None
        label_id: dict[str, int] = {}  # free-form linkers: label -> entity id, in order of first appearance
        runs: list[str] = []
        pending: list[np.ndarray] = []
        n_pending = n_pairs = 0

        def spill() -> None:
            nonlocal pending, n_pending, n_pairs
            if pending:
                keys = np.unique(np.concatenate(pending))
                pending, n_pending = [], 0
                runs.append(f"{shard.name}.run-{len(runs):04d}.npy")
                save_npy_atomic(self.work / runs[-1], keys)
                n_pairs += len(keys)

        _W.update(linker=self.linker, path=str(self.path), include_title=self.include_title, doc_of_row=self.doc_of_row,
                  chunk=self.chunk)
        use_pool = self.processes > 1 and len(tasks) > 1 and "fork" in mp.get_all_start_methods()
        pool = mp.get_context("fork").Pool(min(self.processes, len(tasks))) if use_pool else None
        try:
            for n, res in pool.imap_unordered(_link_group, tasks) if pool else map(_link_group, tasks):
                if not fixed_vocab:
                    labels, d = res
                    ids = np.fromiter((label_id.setdefault(lab, len(label_id)) for lab in labels), np.int64, len(labels))
                    res = (ids << 32) | d
                pending.append(res)
                n_pending += len(res)
                if n_pending >= self.spill_pairs:
                    spill()
                self.report(n)
        finally:
            if pool:
                pool.close()
                pool.join()
            _W.clear()
        spill()
        if not fixed_vocab:
            write_json_atomic(self.work / f"{shard.name}.labels.json", list(label_id))
        return {"rows": shard.stop - shard.start, "pairs": n_pairs, "runs": runs, "processes": self.processes if use_pool else 1}


def build_postings(
    store: PassageStore | str | os.PathLike,
    linker: EntityLinker,
    out: str | os.PathLike,
    *,
    unit: str = "articles",
    include_title: bool = True,
    workers: int | None = None,
    chunk: int = 5_000,
    spill_pairs: int = 50_000_000,
    overwrite: bool = False,
    progress: bool = False,
    engine: EngineConfig | None = None,
) -> "Postings":
    """Link every passage of `store` and write entity -> document postings to `out` (atomically).

    engine: None / local: the whole store as one shard, linked by `workers` forked processes on this machine.
    ray (or engine.shards): row-range shards linked by actors that each build the linker's automaton once,
    resumable per shard; the postings are identical to the local engine's."""
    if unit not in UNITS:
        raise BadInputError(f"unknown document unit {unit!r}; choose one of: {', '.join(UNITS)}")
    store = store if isinstance(store, PassageStore) else PassageStore(store)
    from rag.device import cpu_threads

    workers = cpu_threads() if workers is None else int(workers)
    if workers < 1:
        raise BadInputError(f"workers must be >= 1, got {workers}")
    engine = engine or LOCAL
    fixed_vocab = linker.vocabulary is not None
    if engine.sharded and not fixed_vocab:
        raise BadInputError(
            f"the {linker.name or type(linker).__name__} linker returns free-form labels; sharded (ray) linking needs a "
            "fixed-vocabulary linker (lexicon or spacy). Use the local engine for it"
        )
    doc_of_row, doc_ids = _documents(store, unit)
    n_docs = len(doc_ids) if doc_ids is not None else len(store)
    plan = engine.plan(len(store))

    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, resume=engine.sharded, kind=KIND, inputs=[store.folder]) as tmp:
        work = tmp / WORK
        work.mkdir(parents=True, exist_ok=True)
        key = {"passages": store.fingerprint, "linker": linker.identity(), "include_title": include_title,
               "n_docs": int(doc_of_row.max()) + 1 if len(doc_of_row) else 0}
        shard_log = ShardLog(work, key, plan)
        for i, rec in list(shard_log.done.items()):
            if "runs" not in rec or not all((work / r).exists() for r in rec["runs"]):
                shard_log.done.pop(i)  # recorded but a file is gone (or recorded by an older rag): redo it
        if not (work / DOC_OF_ROW).exists() or shard_log.pending(plan):
            save_npy_atomic(work / DOC_OF_ROW, doc_of_row)
        bar = _bar(len(store), progress)
        with engine_session(engine):
            done = run_shards(engine, LinkShard,
                              {"linker": linker, "passages": str(store.folder), "work": str(work), "include_title": include_title,
                               "chunk": chunk, "processes": 1 if engine.is_ray else workers, "spill_pairs": spill_pairs},
                              plan, shard_log, progress=bar.update)
        bar.close()
        shards = [done[s.index] for s in plan]
        runs = [work / r for rec in shards for r in rec["runs"]]
        if fixed_vocab:
            vocab = linker.vocabulary
        else:  # one shard (refused above otherwise): its labels, in order of first appearance
            vocab = json.loads((work / f"{plan[0].name}.labels.json").read_text(encoding="utf-8"))

        n_vocab = len(vocab)
        counts = np.zeros(n_vocab, np.int64)
        raw = tmp / "docs.raw"
        with open(raw, "wb") as f:
            if len(runs) <= 1:
                keys = np.load(runs[0]) if runs else np.zeros(0, np.int64)
                counts += np.bincount(keys >> 32, minlength=n_vocab)
                (keys & 0xFFFFFFFF).astype(np.int32).tofile(f)
                del keys
            else:
                _merge_runs(runs, n_vocab, spill_pairs, counts, f)
        n_pairs = int(counts.sum())
        keep = np.flatnonzero(counts > 0)
        indptr = np.zeros(len(keep) + 1, np.int64)
        np.cumsum(counts[keep], out=indptr[1:])
        np.save(tmp / "indptr.npy", indptr)
        docs = np.lib.format.open_memmap(tmp / "docs.npy", mode="w+", dtype=np.int32, shape=(n_pairs,))
        src = np.memmap(raw, dtype=np.int32, mode="r", shape=(n_pairs,)) if n_pairs else np.zeros(0, np.int32)
        for i in range(0, n_pairs, 1 << 24):
            docs[i : i + (1 << 24)] = src[i : i + (1 << 24)]
        docs.flush()
        del docs, src
        raw.unlink()
        shutil.rmtree(work)
        with open(tmp / "entities.txt", "w", encoding="utf-8", newline="\n") as f:
            for i in keep.tolist():
                f.write(_one_line(vocab[i]) + "\n")
        files = ["indptr.npy", "docs.npy", "entities.txt"]
        if doc_ids is not None:
            with open(tmp / "doc_ids.txt", "w", encoding="utf-8", newline="\n") as f:
                for d in doc_ids:
                    f.write(_one_line(d) + "\n")
            files.append("doc_ids.txt")
        seconds = time.perf_counter() - t0
        fingerprint = hashlib.sha256("".join(file_sha256(tmp / n) for n in files).encode()).hexdigest()[:32]
        processes: dict[str, int] = {}  # worker -> the most processes it linked a shard with
        for rec in shards:
            processes[rec["worker"]] = max(processes.get(rec["worker"], 1), rec["processes"])
        write_manifest(
            tmp,
            kind=KIND,
            format=FORMAT,
            libraries=("numpy", "pyarrow"),
            unit=unit,
            include_title=include_title,
            passages={"path": str(store.folder), "fingerprint": store.fingerprint, "n_passages": len(store)},
            linker=linker.identity(),
            fingerprint=fingerprint,
            n_entities=int(len(keep)),
            n_docs=int(n_docs),
            n_pairs=n_pairs,
            n_runs=len(runs),
            workers=sum(processes.values()),
            engine=engine.as_dict(),
            shards=[{k: rec.get(k) for k in ("start", "stop", "pairs", "seconds", "worker")} for rec in shards]
            if engine.sharded else None,
            build_seconds=round(seconds, 2),
            passages_per_second=round(len(store) / max(seconds, 1e-9), 1),
            files=file_sizes(tmp, files),
        )
    log.info("postings %s: %d entities, %d pairs over %d %s in %.1f s", out, len(keep), n_pairs, n_docs, unit, seconds)
    return Postings(out)


def _merge_runs(runs: list[Path], n_vocab: int, spill_pairs: int, counts: np.ndarray, f) -> None:
    """k-way merge of sorted unique key runs by entity range, appending docs to f and counting per entity."""
    mm = [np.load(p, mmap_mode="r") for p in runs]
    total = sum(len(m) for m in mm)
    n_chunks = max(1, int(np.ceil(2 * total / max(spill_pairs, 1))))
    bounds = np.unique(np.linspace(0, n_vocab, n_chunks + 1).astype(np.int64))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        klo, khi = lo << 32, hi << 32
        parts = [m[np.searchsorted(m, klo) : np.searchsorted(m, khi)] for m in mm]
        keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        counts += np.bincount(keys >> 32, minlength=n_vocab)
        (keys & 0xFFFFFFFF).astype(np.int32).tofile(f)
    del mm


def _one_line(s: str) -> str:
    return s.replace("\n", " ").replace("\r", " ")


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="passage", desc="linking", unit_scale=True, smoothing=0.1, disable=not progress)
