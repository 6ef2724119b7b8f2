"""Passage building in shards, one per source file (local or Ray), merged into the same store as a local build.

Each worker reads one source file exactly as build_passages does and writes to the work folder
`<out>.partial/build/`:
    shard-XXXXX.parquet        the file's passages (passages.parquet columns, in reading order)
    shard-XXXXX.redirects.tsv  its redirects
    shard-XXXXX.ids.npy        sorted 16-byte digests of its document ids (duplicates across files are found
                               by the driver, which merges these)
The driver then streams the shards, in source order, through one PassageWriter: passages.parquet is byte
for byte the file a local build writes (same rows, same row groups), so the store's fingerprint is the same.
A corpus given as one file is one shard: split it (e.g. wikiextractor's AA/wiki_00 ... folders) to spread it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from rag.artifacts import quick_fingerprint
from rag.engine import EngineConfig, Shard, ShardLog, ShardWorker, engine_session, run_shards, save_npy_atomic

WORK = "build"


class BuildShard(ShardWorker):
    def __init__(self, paths: list[str], format: str | None, fields: dict, words: int, prefixes: list[str], skip_bad: bool,
                 work: str, resources: dict | None = None):
        super().__init__(resources)
        self.paths, self.format, self.fields, self.words = paths, format, fields, words
        self.prefixes, self.skip_bad, self.work = prefixes, skip_bad, Path(work)

    def run(self, shard: Shard) -> dict:
        from rag.corpus.build import RedirectWriter, _IdSet, end_source, read_documents, source_record
        from rag.corpus.readers import Fields, open_reader
        from rag.corpus.store import FILE, PassageWriter

        path = Path(self.paths[shard.index])
        prefix = self.prefixes[shard.index]
        reader = open_reader(path, self.format, fields=Fields(**self.fields), skip_bad=self.skip_bad)
        base = self.work / shard.name
        tmp_dir, tmp_red = Path(f"{base}.tmp-{os.getpid()}"), Path(f"{base}.redirects.tsv.tmp-{os.getpid()}")
        writer, seen = PassageWriter(tmp_dir), _IdSet()
        n_docs = n_empty = 0
        with open(tmp_red, "w", encoding="utf-8", newline="\n") as f:
            red = RedirectWriter(f)
            for _, passages in read_documents(reader, path, prefix, self.words, seen, red):
                writer.add(passages)
                n_empty += not passages
                n_docs += 1
            end_source(seen, path)
        writer.finish()
        save_npy_atomic(f"{base}.ids.npy", seen.digests)  # sorted, as _check_unique needs
        os.replace(tmp_red, f"{base}.redirects.tsv")
        os.replace(tmp_dir / FILE, f"{base}.parquet")  # last: its presence means the shard is complete
        shutil.rmtree(tmp_dir)
        return {"source": source_record(path, reader, prefix, n_docs, writer.n_passages, red.n), "n_empty": n_empty}


def build_sharded(paths: list[Path], tmp: Path, writer, *, format: str | None, fields: dict, words: int,
                  prefixes: list[str], skip_bad: bool, engine: EngineConfig, progress=None) -> tuple[list[dict], int, int]:
    """Build one shard per source into tmp/build/, then merge them into `writer` (a PassageWriter on tmp) and
    tmp/redirects.tsv; returns (per-source stats, documents read, empty documents)."""
    import pyarrow.parquet as pq

    from rag.corpus.store import COLUMNS, REDIRECTS

    work = tmp / WORK
    work.mkdir(parents=True, exist_ok=True)
    plan = [Shard(i, i, i + 1) for i in range(len(paths))]
    key = {"sources": [[str(p.resolve()), quick_fingerprint(p)] for p in paths], "format": format, "fields": fields,
           "words": words, "prefixes": prefixes, "skip_bad": skip_bad}
    log = ShardLog(work, key, plan)
    for i in [i for i in log.done if not (work / f"{plan[i].name}.parquet").exists()]:
        log.done.pop(i)

    def report(rec: dict) -> None:
        if progress is not None:
            s = rec["source"]
            progress(s["bytes"], s["n_docs"], s["n_passages"])

    with engine_session(engine):
        done = run_shards(engine, BuildShard,
                          {"paths": [str(p) for p in paths], "format": format, "fields": fields, "words": words,
                           "prefixes": prefixes, "skip_bad": skip_bad, "work": str(work)},
                          plan, log, progress=report)
    _check_unique(work, plan, paths)
    with open(tmp / REDIRECTS, "w", encoding="utf-8", newline="\n") as red:
        for s in plan:
            with open(work / f"{s.name}.redirects.tsv", encoding="utf-8") as f:
                shutil.copyfileobj(f, red)
            for batch in pq.ParquetFile(work / f"{s.name}.parquet").iter_batches(batch_size=50_000, columns=list(COLUMNS)):
                writer.add_columns(batch.to_pydict())
    shutil.rmtree(work)
    sources = [done[s.index]["source"] for s in plan]
    return sources, sum(x["n_docs"] for x in sources), sum(done[s.index]["n_empty"] for s in plan)


def _check_unique(work: Path, plan: list[Shard], paths: list[Path]) -> None:
    """A document id used in two source files is the same error as in a local build (naming the later file)."""
    import pyarrow.parquet as pq

    seen = np.empty(0, dtype="S16")
    for s in plan:
        d = np.load(work / f"{s.name}.ids.npy")
        if seen.size and d.size:
            pos = np.minimum(np.searchsorted(seen, d), seen.size - 1)
            hit = np.flatnonzero(seen[pos] == d)
            if hit.size:
                ids = pq.read_table(work / f"{s.name}.parquet", columns=["doc_id"]).column("doc_id").to_pylist()
                from rag.corpus.build import _duplicate, id_digests

                dup = next((i for i in dict.fromkeys(ids) if id_digests([i])[0] == d[hit[0]]), "(an empty document's id)")

                _duplicate(dup, paths[s.index])
        seen = np.sort(np.concatenate([seen, d]))

