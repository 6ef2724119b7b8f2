"""Passage store: a folder holding passages.parquet and manifest.json.

passages.parquet columns (one row per passage, row number = the passage's integer id in every index):
    pid       string  f"{doc_id}#{position}", stable across rebuilds of the same corpus
    doc_id    string
    title     string
    text      string
    position  int32   index of the window within its document

redirects.tsv (written by `rag corpus build`; empty unless the corpus was a MediaWiki dump), no header:
    alias \t target    one redirect page per line: another title that leads to the article `target`
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rag.artifacts import HashingFile, check_manifest_files, file_digest, file_sizes, read_manifest, write_manifest
from rag.errors import ArtifactError, BadInputError
from rag.types import Passage

FORMAT = 1
KIND = "passages"
FILE = "passages.parquet"
REDIRECTS = "redirects.tsv"
COLUMNS = ("pid", "doc_id", "title", "text", "position")


def _schema():
    import pyarrow as pa

    return pa.schema(
        [("pid", pa.string()), ("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string()), ("position", pa.int32())]
    )


class PassageWriter:
    """Streams passages into `folder/passages.parquet` in row groups; `close()` writes the manifest.

    Use inside `rag.artifacts.atomic_dir` so a failed build leaves nothing behind.
    """

    def __init__(self, folder: str | os.PathLike, row_group: int = 50_000):
        import pyarrow.parquet as pq

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = HashingFile(self.folder / FILE)  # the manifest's sha256, computed as the bytes stream out
        self._writer = pq.ParquetWriter(self._file, _schema(), compression="zstd")
        self._buf: dict[str, list] = {c: [] for c in COLUMNS}
        self._row_group = row_group
        self._seen_docs: set[str] = set()
        self.n_passages = 0
        self.n_docs = 0

    def add(self, passages: Iterable[Passage]) -> None:
        buf = self._buf
        for p in passages:
            buf["pid"].append(p.pid)
            buf["doc_id"].append(p.doc_id)
            buf["title"].append(p.title)
            buf["text"].append(p.text)
            buf["position"].append(p.position)
            if p.position == 0:
                self.n_docs += 1
            self.n_passages += 1
            if len(buf["pid"]) >= self._row_group:
                self._flush()
                buf = self._buf  # _flush starts a new buffer

    def add_columns(self, cols: dict) -> None:
        """Append passages given as {column: list} (all of COLUMNS); row groups break where `add` would break them."""
        n = len(cols["pid"])
        self.n_docs += sum(1 for p in cols["position"] if p == 0)
        self.n_passages += n
        at = 0
        while at < n:
            take = min(self._row_group - len(self._buf["pid"]), n - at)
            for c in COLUMNS:
                self._buf[c].extend(cols[c][at : at + take])
            at += take
            if len(self._buf["pid"]) >= self._row_group:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buf["pid"]:
            self._writer.write_table(pa.table(self._buf, schema=_schema()))
            self._buf = {c: [] for c in COLUMNS}

    def finish(self) -> None:
        """Write the last row group and close the Parquet file, without a manifest (a part of a store)."""
        self._flush()
        self._writer.close()
        self._file.close()

    def close(self, extra_files: Sequence[str] = (), **manifest_fields) -> dict:
        """Finish the file and write the manifest; `extra_files` (already in the folder) get their sizes checked too."""
        self.finish()
        return write_store_manifest(self.folder, self.n_passages, self.n_docs, extra_files, **manifest_fields)


def write_store_manifest(folder: str | os.PathLike, n_passages: int, n_docs: int, extra_files: Sequence[str] = (),
                         **manifest_fields) -> dict:
    """The manifest of a finished passages.parquet in `folder` (n_docs: documents with a passage)."""
    if n_passages == 0:
        raise BadInputError("the corpus produced no passages (empty input, or every record was empty or skipped)")
    folder = Path(folder)
    digest = file_digest(folder / FILE)
    files = file_sizes(folder, [FILE, *extra_files])
    return write_manifest(
        folder,
        kind=KIND,
        format=FORMAT,
        libraries=("pyarrow",),
        n_passages=n_passages,
        n_docs=n_docs,
        fingerprint=digest["sha256"][:32],
        files=files,
        hashes={FILE: digest, **{n: file_digest(folder / n) for n in extra_files}},
        **manifest_fields,
    )


class PassageStore:
    """Read side: passages by row or pid, and streaming batches for indexing.

    The table is memory-mapped; fetching k rows costs O(k) after the first access.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, kind=KIND, format=FORMAT)
        check_manifest_files(self.folder, self.manifest)
        self.fingerprint: str = self.manifest["fingerprint"]
        self._table = None
        self._pid_to_row: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.manifest["n_passages"])

    @property
    def table(self):
        if self._table is None:
            import pyarrow.parquet as pq

            try:
                self._table = pq.read_table(self.folder / FILE, memory_map=True)
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise ArtifactError(f"{self.folder / FILE}: cannot be read ({type(e).__name__}: {e}); the file is "
                                    f"damaged: rebuild with: rag corpus build ...") from e
            if self._table.num_rows != len(self):
                raise ArtifactError(f"{self.folder}: {self._table.num_rows} rows but the manifest says {len(self)}; rebuild")
        return self._table

    def pids(self) -> list[str]:
        return self.table.column("pid").to_pylist()

    def get_rows(self, rows: Sequence[int]) -> list[Passage]:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise BadInputError(f"passage row out of range 0..{len(self) - 1}")
        sub = self.table.take(rows).to_pydict()
        return [
            Passage(pid=p, doc_id=d, title=t, text=x, position=int(pos))
            for p, d, t, x, pos in zip(sub["pid"], sub["doc_id"], sub["title"], sub["text"], sub["position"])
        ]

    def row_of(self, pids: Sequence[str]) -> list[int]:
        if self._pid_to_row is None:
            self._pid_to_row = {p: i for i, p in enumerate(self.pids())}
        try:
            return [self._pid_to_row[p] for p in pids]
        except KeyError as e:
            raise BadInputError(f"unknown passage id {e.args[0]!r} in {self.folder}") from None

    def get(self, pids: Sequence[str]) -> list[Passage]:
        return self.get_rows(self.row_of(pids))

    def redirects(self) -> Iterator[tuple[str, str]]:
        """(alias, target) pairs from redirects.tsv; none for stores without one."""
        path = self.folder / REDIRECTS
        if not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            for line in f:
                alias, _, target = line.rstrip("\n").partition("\t")
                if alias and target:
                    yield alias, target

    def iter_batches(self, batch_size: int = 10_000, columns: Sequence[str] = ("title", "text"), start: int = 0) -> Iterator[tuple[int, dict]]:
        """Yields (first_row, {column: list}) over rows [start, n) without loading the whole table."""
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.folder / FILE, memory_map=True)
        row = 0
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            n = batch.num_rows
            if row + n <= start:
                row += n
                continue
            d = batch.to_pydict()
            if row < start:
                d = {k: v[start - row :] for k, v in d.items()}
                row = start
            yield row, d
            row += len(next(iter(d.values())))


def passage_text(title: str, text: str) -> str:
    """What retrievers index and readers see: the DPR convention of title, then text."""
    return f"{title}\n{text}" if title else text


def read_row_range(folder: str | os.PathLike, start: int, stop: int, columns: Sequence[str] = ("title", "text")) -> dict:
    """{column: list} of rows [start, stop) of a store's passages.parquet, reading only the row groups they span
    (what a shard worker reads; no manifest check, the driver did that)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(Path(folder) / FILE, memory_map=True)
    groups, first = _row_groups(pf, start, stop, folder)
    if not groups:
        return {c: [] for c in columns}
    table = pf.read_row_groups(groups, columns=list(columns)) if len(groups) > 1 else pf.read_row_group(groups[0], columns=list(columns))
    table = table.slice(start - first, stop - start)
    return {c: table.column(c).to_pylist() for c in columns}


def iter_row_range(folder: str | os.PathLike, start: int, stop: int, batch_size: int,
                   columns: Sequence[str] = ("title", "text")) -> Iterator[tuple[int, dict]]:
    """Yields (first_row, {column: list}) over rows [start, stop) of a store's passages.parquet in batches of exactly
    batch_size rows counted from `start` (the last may be shorter), reading only the row groups they span."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(Path(folder) / FILE, memory_map=True)
    groups, first = _row_groups(pf, start, stop, folder)
    if not groups:
        return
    buf: dict[str, list] = {c: [] for c in columns}
    at = start  # first row of buf
    row = first
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=list(columns)):
        lo, hi = max(start, row) - row, min(stop, row + batch.num_rows) - row
        row += batch.num_rows
        if lo >= hi:
            continue
        d = batch.slice(lo, hi - lo).to_pydict()
        for c in columns:
            buf[c].extend(d[c])
        while len(buf[columns[0]]) >= batch_size:
            yield at, {c: v[:batch_size] for c, v in buf.items()}
            buf = {c: v[batch_size:] for c, v in buf.items()}
            at += batch_size
    if buf[columns[0]]:
        yield at, buf


def _row_groups(pf, start: int, stop: int, folder) -> tuple[list[int], int]:
    """(the row groups of parquet file `pf` that rows [start, stop) span, the first row of the first of them)."""
    groups, first, row = [], 0, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if row + n > start and row < stop:
            first = first if groups else row
            groups.append(g)
        row += n
    if stop > row or start < 0 or start > stop:
        raise BadInputError(f"rows [{start}, {stop}) are outside the {row} rows of {folder}")
    return groups, first
