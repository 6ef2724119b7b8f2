"""Corpus files -> a passage store folder (passages.parquet, redirects.tsv, manifest.json), atomically.

Several sources are read one after the other into one store. Document ids must be unique across all of
them, since pids are f"{doc_id}#{position}": a repeated id is an error naming the id and the source,
unless prefix_ids=True, which makes every doc id f"{source name}:{id}" (source name = the file name
without its suffixes). Uniqueness is checked with 16-byte hashes of the ids (16 bytes per document
kept in memory, not the ids themselves).

A build is plan -> work per shard -> merge (rag.engine). A shard is a range of source files, which one
BuildShard worker reads in order into the work folder `<out>.partial/build/`:
    shard-XXXXX.parquet        its passages (passages.parquet columns, in reading order)
    shard-XXXXX.redirects.tsv  its redirects
    shard-XXXXX.ids.npy        sorted 16-byte digests of its document ids
The local engine reads every source as one shard, whose files become the store's as they are. The ray engine
(or engine.shards) reads one source file per shard; the driver then finds ids repeated across shards from the
digests and streams the shards, in source order, through one PassageWriter: passages.parquet is byte for byte
the file a local build writes (same rows, same row groups), so the store's fingerprint is the same. A corpus
given as one file is one shard: split it (e.g. wikiextractor's AA/wiki_00 ... folders) to spread it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from rag.artifacts import atomic_dir, quick_fingerprint
from rag.corpus.chunking import DEFAULT_WORDS, check_words, chunk_document
from rag.corpus.readers import Fields, Redirect, detect_format, open_reader
from rag.corpus.store import COLUMNS, FILE, REDIRECTS, PassageWriter, write_store_manifest
from rag.corpus.store import KIND as STORE_KIND
from rag.engine import LOCAL, EngineConfig, Shard, ShardLog, ShardWorker, engine_session, run_shards, save_npy_atomic
from rag.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from rag.corpus.readers import CorpusReader
    from rag.types import Passage

log = logging.getLogger(__name__)

WORK = "build"


def expand_sources(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Paths as given; a folder stands for the files under it (sorted, hidden ones left out),
    as wikiextractor writes its output (AA/wiki_00, AA/wiki_01, ...)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if not p.exists():
            raise BadInputError(f"{p}: no such file or folder")
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                raise BadInputError(f"{p}: the folder holds no files")
            out.extend(files)
        else:
            out.append(p)
    if not out:
        raise BadInputError("no corpus files given")
    return out


def source_name(path: Path) -> str:
    """'enwiki-2015.jsonl.xz' -> 'enwiki-2015' (the prefix of doc ids with prefix_ids=True)."""
    name = path.name
    while True:
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem or len(ext) > 8:
            return name
        name = stem
        if ext.lower() not in ("gz", "bz2", "xz", "jsonl", "ndjson", "json", "tsv", "tab", "parquet", "pq", "xml"):
            return f"{stem}.{ext}"


def id_digests(ids: Sequence[str]) -> np.ndarray:
    """(n,) 16-byte blake2b digests of document ids: what _IdSet keeps instead of the ids."""
    return np.array([hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=16).digest() for i in ids], dtype="S16")


class _IdSet:
    """Seen doc ids as sorted 16-byte blake2b digests, checked a block of ids at a time."""

    def __init__(self, block: int = 65_536):
        self._seen = np.empty(0, dtype="S16")
        self._block: list[str] = []
        self._size = block

    def add(self, doc_id: str) -> str | None:
        """Returns a repeated id once its block is checked (possibly a few thousand ids later), else None."""
        self._block.append(doc_id)
        return self.flush() if len(self._block) >= self._size else None

    def flush(self) -> str | None:
        if not self._block:
            return None
        ids, self._block = self._block, []
        digests = id_digests(ids)
        order = np.argsort(digests, kind="stable")
        d = digests[order]
        same = np.flatnonzero(d[1:] == d[:-1])
        if same.size:
            return ids[order[same[0] + 1]]
        if self._seen.size:
            pos = np.searchsorted(self._seen, d)
            hit = np.flatnonzero(self._seen[np.minimum(pos, self._seen.size - 1)] == d)
            if hit.size:
                return ids[order[hit[0]]]
        self._seen = np.sort(np.concatenate([self._seen, d]))
        return None

    @property
    def digests(self) -> np.ndarray:
        """Sorted digests of every id checked so far (flush first to include the last block)."""
        return self._seen


class RedirectWriter:
    """A corpus' redirects as alias<TAB>target lines, counted."""

    def __init__(self, f):
        self.f = f
        self.n = 0

    def add(self, r: Redirect) -> None:
        # titles cannot hold tabs or line breaks; guard against odd input anyway
        self.f.write(f"{_tsv(r.alias)}\t{_tsv(r.target)}\n")
        self.n += 1


def read_documents(reader: "CorpusReader", path: Path, prefix: str, words: int, seen: _IdSet,
                   redirects: RedirectWriter) -> Iterator[tuple[str, list["Passage"]]]:
    """One source's documents in reading order, as (doc id, passages) ([] for an empty document).

    Redirects go to `redirects` instead. Doc ids get `prefix` and must be new to `seen` (else an error naming
    the id and `path`); `seen` checks ids a block at a time, so call end_source(seen, path) after the last one.
    """
    for rec in reader.records():
        if isinstance(rec, Redirect):
            redirects.add(rec)
            continue
        if prefix:
            rec = replace(rec, doc_id=prefix + rec.doc_id)
        dup = seen.add(rec.doc_id)
        if dup is not None:
            _duplicate(dup, path)
        yield rec.doc_id, chunk_document(rec, words)


def end_source(seen: _IdSet, path: Path) -> None:
    """Check the ids `seen` still holds unchecked; a repeat is blamed on `path`."""
    dup = seen.flush()
    if dup is not None:
        _duplicate(dup, path)


def source_record(path: Path, reader: "CorpusReader", prefix: str, n_docs: int, n_passages: int, n_redirects: int) -> dict:
    """The manifest's entry for one source file."""
    stats = reader.stats.as_dict()
    return {
        "path": str(path.resolve()),
        "fingerprint": quick_fingerprint(path),
        "bytes": path.stat().st_size,
        "format": reader.name,
        "n_docs": n_docs,
        "n_passages": n_passages,
        "n_redirects": n_redirects,
        "n_bad": stats["n_bad"],
        "bad_examples": stats["bad_examples"],
        "n_other_namespaces": stats["n_other_namespaces"],
        "id_prefix": prefix,
    }


class BuildShard(ShardWorker):
    """Reads the source files [shard.start, shard.stop) in order into the work folder (see the module docstring)."""

    def __init__(self, paths: list[str], formats: list[str], fields: dict, words: int, prefixes: list[str], skip_bad: bool,
                 limit_docs: int | None, work: str, resources: dict | None = None):
        super().__init__(resources)
        self.paths, self.formats, self.fields, self.words = paths, formats, fields, words
        self.prefixes, self.skip_bad, self.limit_docs, self.work = prefixes, skip_bad, limit_docs, Path(work)

    def run(self, shard: Shard) -> dict:
        """Reports (bytes of the compressed input, 1 document, its passages) per document read."""
        base = self.work / shard.name
        tmp_dir, tmp_red = Path(f"{base}.tmp-{os.getpid()}"), Path(f"{base}.redirects.tsv.tmp-{os.getpid()}")
        writer, seen = PassageWriter(tmp_dir), _IdSet()
        sources: list[dict] = []
        try:
            n_docs, n_empty = self._read(shard, writer, seen, sources, tmp_red)
        except _Repeat:
            raise first_repeat([self._source(i) for i in range(shard.start, shard.stop)]) from None
        writer.finish()
        save_npy_atomic(f"{base}.ids.npy", seen.digests)  # sorted, as _check_unique needs
        os.replace(tmp_red, f"{base}.redirects.tsv")
        os.replace(tmp_dir / FILE, f"{base}.parquet")  # last: its presence means the shard is complete
        shutil.rmtree(tmp_dir)
        return {"sources": sources, "n_empty": n_empty, "n_passages": writer.n_passages, "n_docs_kept": writer.n_docs}

    def _source(self, i: int):
        path = Path(self.paths[i])
        return path, lambda: open_reader(path, self.formats[i], fields=Fields(**self.fields), skip_bad=self.skip_bad), self.prefixes[i]

    def _read(self, shard: Shard, writer, seen, sources: list, tmp_red: Path) -> tuple[int, int]:
        n_docs = n_empty = 0
        with open(tmp_red, "w", encoding="utf-8", newline="\n") as f:
            red = RedirectWriter(f)
            for i in range(shard.start, shard.stop):
                path, prefix = Path(self.paths[i]), self.prefixes[i]
                reader = open_reader(path, self.formats[i], fields=Fields(**self.fields), skip_bad=self.skip_bad)
                n_before, p_before, r_before = n_docs, writer.n_passages, red.n
                last_bytes = 0
                for _, passages in read_documents(reader, path, prefix, self.words, seen, red):
                    writer.add(passages)
                    n_empty += not passages
                    n_docs += 1
                    b = reader.bytes_read()
                    self.report(b - last_bytes, 1, len(passages))
                    last_bytes = b
                    if self.limit_docs is not None and n_docs >= self.limit_docs:
                        break
                end_source(seen, path)
                sources.append(source_record(path, reader, prefix, n_docs - n_before, writer.n_passages - p_before,
                                             red.n - r_before))
                if self.limit_docs is not None and n_docs >= self.limit_docs:
                    break
        return n_docs, n_empty


def build_passages(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    words: int = DEFAULT_WORDS,
    id_field: str = "id",
    title_field: str | None = "title",
    text_field: str = "text",
    number_docs: bool = False,
    prefix_ids: bool = False,
    skip_bad: bool = False,
    overwrite: bool = False,
    limit_docs: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    engine: EngineConfig | None = None,
) -> dict:
    """Read `sources`, cut DPR-style passages of `words` words, write the store at `out`; returns the manifest.

    format: a FORMATS name for every source (None: detected per file). id/title/text_field: field names of
    generic jsonl/tsv/parquet records (title_field None or "": no titles). number_docs: ids are line numbers.
    limit_docs: stop after this many documents (over all sources). progress(bytes, docs, passages) is called
    with increments as reading goes on (bytes of the compressed inputs; on ray, once per source file). Nothing
    is left at `out` on failure. engine: None / local reads the sources one after the other here, as one shard;
    ray (or engine.shards) reads one source file per worker, resumably, and writes the same passages.parquet
    byte for byte.
    """
    check_words(words)
    if limit_docs is not None and (not isinstance(limit_docs, int) or limit_docs < 1):
        raise BadInputError(f"limit_docs must be a positive integer, got {limit_docs!r}")
    paths = expand_sources(sources)
    fields = {"id": id_field, "title": title_field or None, "text": text_field, "number_docs": number_docs}
    formats = [format or detect_format(p) for p in paths]
    for p, f in zip(paths, formats):  # fail early on formats
        open_reader(p, f, fields=Fields(**fields), skip_bad=skip_bad)
    if prefix_ids:
        names = [source_name(p) for p in paths]
        if len(set(names)) != len(names):
            raise BadInputError(f"prefix_ids needs distinct source names, got {names}")
    engine = engine or LOCAL
    if engine.sharded and limit_docs is not None:
        raise BadInputError("--limit-docs stops a sequential read; use the local engine with it")
    plan = engine.plan(len(paths), shards=len(paths))  # sharded: one source file per shard
    prefixes = [f"{source_name(p)}:" if prefix_ids else "" for p in paths]

    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, resume=engine.sharded, kind=STORE_KIND, inputs=paths) as tmp:
        work = tmp / WORK
        work.mkdir(parents=True, exist_ok=True)
        key = {"sources": [[str(p.resolve()), quick_fingerprint(p)] for p in paths], "format": format, "fields": fields,
               "words": words, "prefixes": prefixes, "skip_bad": skip_bad, "limit_docs": limit_docs}
        shard_log = ShardLog(work, key, plan)
        for i in [i for i in shard_log.done if not (work / f"{plan[i].name}.parquet").exists()]:
            shard_log.done.pop(i)
        with engine_session(engine):
            done = run_shards(engine, BuildShard,
                              {"paths": [str(p) for p in paths], "formats": formats, "fields": fields, "words": words,
                               "prefixes": prefixes, "skip_bad": skip_bad, "limit_docs": limit_docs, "work": str(work)},
                              plan, shard_log, progress=progress)
        shards = [done[s.index] for s in plan]
        per_source = [src for rec in shards for src in rec["sources"]]
        n_read = sum(s["n_docs"] for s in per_source)
        n_empty = sum(rec["n_empty"] for rec in shards)
        n_passages = sum(rec["n_passages"] for rec in shards)
        n_bad = sum(s["n_bad"] for s in per_source)
        n_redirects = sum(s["n_redirects"] for s in per_source)
        _check_unique(work, plan, lambda stop: first_repeat(
            [(paths[i], lambda i=i: open_reader(paths[i], formats[i], fields=Fields(**fields), skip_bad=skip_bad), prefixes[i])
             for i in range(stop)]))
        if n_passages == 0:
            raise BadInputError(
                f"no passages from {', '.join(map(str, paths))}: {n_read} documents read, {n_empty} of them empty, "
                f"{n_bad} bad records skipped, {n_redirects} redirects"
            )
        _merge(work, plan, tmp)
        shutil.rmtree(work)
        seconds = time.perf_counter() - t0
        manifest = write_store_manifest(
            tmp,
            n_passages,
            sum(rec["n_docs_kept"] for rec in shards),
            extra_files=(REDIRECTS,),
            sources=per_source,
            words=words,
            corpus_format=format or "auto",
            fields={"id": None if number_docs else id_field, "title": fields["title"], "text": text_field},
            number_docs=number_docs,
            prefix_ids=prefix_ids,
            limit_docs=limit_docs,
            engine=engine.as_dict(),
            n_docs_read=n_read,
            n_empty_docs=n_empty,
            n_bad=n_bad,
            n_redirects=n_redirects,
            redirects=REDIRECTS,
            build_seconds=round(seconds, 2),
        )
    log.info("built %s: %d passages from %d documents in %.1f s", out, n_passages, n_read, seconds)
    return manifest


def _check_unique(work: Path, plan: list[Shard], repeat_error: Callable[[int], BadInputError]) -> None:
    """A document id used in two shards is the same error as in a local build: repeat_error(stop) locates the
    first repeat in sources [0, stop) (shards of several files are only planned as the single shard of a local
    build, which checks its ids as it reads)."""
    if len(plan) == 1:
        return
    seen = np.empty(0, dtype="S16")
    for s in plan:
        d = np.load(work / f"{s.name}.ids.npy")
        if seen.size and d.size:
            pos = np.minimum(np.searchsorted(seen, d), seen.size - 1)
            hit = np.flatnonzero(seen[pos] == d)
            if hit.size:
                raise repeat_error(s.stop)
        seen = np.sort(np.concatenate([seen, d]))


def _merge(work: Path, plan: list[Shard], tmp: Path) -> None:
    """The shards' files -> tmp/passages.parquet and tmp/redirects.tsv, in shard order; one shard's files are moved."""
    import pyarrow.parquet as pq

    if len(plan) == 1:
        os.replace(work / f"{plan[0].name}.parquet", tmp / FILE)
        os.replace(work / f"{plan[0].name}.redirects.tsv", tmp / REDIRECTS)
        return
    writer = PassageWriter(tmp)
    with open(tmp / REDIRECTS, "w", encoding="utf-8", newline="\n") as red:
        for s in plan:
            with open(work / f"{s.name}.redirects.tsv", encoding="utf-8") as f:
                shutil.copyfileobj(f, red)
            for batch in pq.ParquetFile(work / f"{s.name}.parquet").iter_batches(batch_size=50_000, columns=list(COLUMNS)):
                writer.add_columns(batch.to_pydict())
    writer.finish()


def _tsv(s: str) -> str:
    return s.replace("\t", " ").replace("\n", " ").replace("\r", " ")


class _Repeat(Exception):
    """Some document id repeats (found a block of ids late); first_repeat() then finds the first one in reading order."""


def _duplicate(doc_id: str, path: Path) -> None:
    raise _Repeat(doc_id)


def first_repeat(sources: Sequence[tuple[Path, Callable[[], "object"], str]]) -> BadInputError:
    """The error for the first document id that repeats, naming file:line of both occurrences. `sources`: (path, a
    function opening its reader, id prefix), in reading order. Only run once a repeat is known (the error path):
    it reads the sources again, keeping a digest and a location per document."""
    ids, where = [], []  # reading order: prefixed id; (source index, line)
    for si, (path, opener, prefix) in enumerate(sources):
        reader = opener()
        for rec in reader.records():
            if isinstance(rec, Redirect):
                continue
            ids.append(prefix + rec.doc_id)
            where.append((si, reader.line))
    d = id_digests(ids)
    order = np.argsort(d, kind="stable")  # equal ids stay in reading order
    same = np.flatnonzero(d[order][1:] == d[order][:-1])
    if not same.size:  # pragma: no cover - _IdSet saw a repeat, so there is one
        return BadInputError(f"{sources[-1][0]}: a document id repeats; passage ids must be unique")
    later = int(order[1:][same].min())
    earlier = int(order[np.flatnonzero(d[order] == d[later])[0]])

    def loc(i: int) -> str:
        si, line = where[i]
        return f"{sources[si][0]}:{line}" if line is not None else f"{sources[si][0]} (document {i + 1})"

    return BadInputError(
        f"{loc(later)}: document id {ids[later]!r} was already used at {loc(earlier)}; passage ids must be unique. Remove the "
        f"duplicate, or pass --prefix-ids to prefix every id with its source's name"
    )
