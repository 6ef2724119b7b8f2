"""Corpus linking in row-range shards (local or Ray): each worker builds the linker's automaton once, then per
shard writes its sorted unique (entity << 32 | doc) keys to link/shard-XXXXX.npy; build_postings merges those
runs exactly as it merges its own spill runs, so the postings equal the local engine's byte for byte.

Work folder (inside the postings' `<out>.partial/`, removed when the postings are written):
    link/doc_of_row.npy     int64 (n_passages,)  document number of each passage row (articles or rows)
    link/shard-XXXXX.npy    int64 sorted unique keys of one shard
    link/shards_done.json   finished shards (rag.engine.shards)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.corpus.store import PassageStore, read_row_range
from rag.engine import EngineConfig, Shard, ShardLog, ShardWorker, engine_session, plan_shards, run_shards, save_npy_atomic
from rag.entities.linkers import EntityLinker, LexiconLinker

WORK = "link"


class LinkShard(ShardWorker):
    def __init__(self, linker: EntityLinker, passages: str, work: str, include_title: bool, chunk: int,
                 resources: dict | None = None):
        super().__init__(resources)
        from rag.entities.postings import _link_rows  # noqa: F401  (fail at start-up, not on the first shard)

        for lk in (linker, getattr(linker, "base", None)):
            if isinstance(lk, LexiconLinker):
                lk.automaton  # built once per worker
                lk.lexicon.entity_id("")
        self.linker, self.passages, self.work = linker, passages, Path(work)
        self.include_title, self.chunk = include_title, chunk
        self.doc_of_row = np.load(self.work / "doc_of_row.npy", mmap_mode="r")

    def run(self, shard: Shard) -> dict:
        from rag.entities.postings import _link_rows

        cols = ("text", "title") if self.include_title else ("text",)
        t = read_row_range(self.passages, shard.start, shard.stop, cols)
        docs = np.asarray(self.doc_of_row[shard.start : shard.stop])
        keys = _link_rows(self.linker, t["text"], t.get("title"), docs, self.chunk)
        save_npy_atomic(self.work / f"{shard.name}.npy", keys)
        return {"rows": shard.stop - shard.start, "pairs": int(len(keys))}


def link_sharded(store: PassageStore, linker: EntityLinker, tmp: Path, doc_of_row: np.ndarray, include_title: bool,
                 chunk: int, engine: EngineConfig, progress: bool = False) -> tuple[list[Path], int, list[dict]]:
    """Link every shard not yet done (inside `tmp`, the postings' partial folder); returns (run files in shard
    order, workers used, each shard's record: rows, pairs, seconds, worker)."""
    from rag.entities.postings import _bar

    work = tmp / WORK
    work.mkdir(parents=True, exist_ok=True)
    plan = plan_shards(len(store), engine.shards)
    key = {"passages": store.fingerprint, "linker": linker.identity(), "include_title": include_title,
           "n_docs": int(doc_of_row.max()) + 1 if len(doc_of_row) else 0}
    log = ShardLog(work, key, plan)
    for i in [i for i in log.done if not (work / f"{plan[i].name}.npy").exists()]:
        log.done.pop(i)  # recorded but its file is gone: redo it
    if not (work / "doc_of_row.npy").exists() or log.pending(plan):
        save_npy_atomic(work / "doc_of_row.npy", doc_of_row)
    bar = _bar(len(store), progress)
    with engine_session(engine):
        done = run_shards(engine, LinkShard,
                          {"linker": linker, "passages": str(store.folder), "work": str(work),
                           "include_title": include_title, "chunk": chunk},
                          plan, log, progress=lambda r: bar.update(r["rows"]))
    bar.close()
    workers = len({r.get("worker") for r in done.values()})
    records = [{k: done[s.index].get(k) for k in ("start", "stop", "pairs", "seconds", "worker")} for s in plan]
    return [work / f"{s.name}.npy" for s in plan], workers, records
