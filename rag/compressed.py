"""Plain, .gz, .bz2 and .xz files read by suffix, as one decompressed stream (binary or text).

    open_binary(path) -> (binary stream, byte counter of the compressed file: progress bars)
    open_text(path)   -> text stream (UTF-8)
Decompression runs ahead in a thread (it releases the GIL, so it overlaps with parsing); corrupt or truncated
compressed data is a BadInputError naming the file.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import queue
import threading
import zlib
from pathlib import Path
from typing import IO

from rag.errors import BadInputError

# compression suffix -> decompressing reader over a binary file object
COMPRESSIONS = {
    ".gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
    ".bz2": lambda f: bz2.BZ2File(f, mode="rb"),
    ".xz": lambda f: lzma.LZMAFile(f, mode="rb"),
}


def split_suffixes(path: str | os.PathLike) -> tuple[str, str | None]:
    """("records.jsonl.gz") -> (".jsonl", ".gz"): the format suffix and the compression suffix."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    return (suffixes[-1] if suffixes else ""), compression


class CountingFile(io.RawIOBase):
    """Counts the compressed bytes read so far, for progress bars."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        self.pos += n or 0
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


class _Decompressing(io.RawIOBase):
    """Decompresses ahead in a thread, so decompression (which releases the GIL) overlaps with parsing.

    Holds at most `depth` blocks of `block` bytes. Corrupt or truncated compressed data becomes a
    BadInputError naming the file. Closing stops the thread and closes the file underneath.
    """

    def __init__(self, path: Path, compression: str, raw: CountingFile, block: int = 1 << 20, depth: int = 4):
        self._path, self._compression, self._raw = path, compression, raw
        self._inner = COMPRESSIONS[compression](io.BufferedReader(raw, 1 << 20))
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._chunk = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(block,), name=f"decompress {path.name}", daemon=True)
        self._thread.start()

    def _run(self, block: int) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(block)
                self._put(data)
                if not data:
                    return
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as e:
            self._put(BadInputError(f"{self._path}: corrupt or truncated {self._compression} data ({e})"))
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread, which raises it
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if not self._chunk:
            if self._done:
                return 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._chunk = memoryview(item)
        n = min(len(b), len(self._chunk))
        b[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            self._inner.close()
            self._raw.close()
        super().close()


def open_binary(path: str | os.PathLike) -> tuple[IO[bytes], CountingFile]:
    """Open a possibly compressed file as a decompressed binary stream, plus the raw byte counter."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p}: is a folder, not a file")
    raw = CountingFile(open(p, "rb", buffering=0))
    _, compression = split_suffixes(p)
    if compression is None:
        return io.BufferedReader(raw, 1 << 20), raw
    return io.BufferedReader(_Decompressing(p, compression, raw), 1 << 20), raw


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> IO[str]:
    """Open a possibly compressed file as decompressed text."""
    return io.TextIOWrapper(open_binary(path)[0], encoding=encoding)
