"""One writer per artifact: an advisory lock held while a command builds an artifact or writes a run folder.

The lock is a file beside the target (`indexes/.wiki-bm25.lock` for `indexes/wiki-bm25`), locked with flock(2),
so the kernel releases it when its holder exits in any way, kill -9 included. The file holds the holder's pid,
host, command line and start time, for the message a second writer gets. A file left by a killed process is
not locked any more: the next writer takes it over (and says so). The holder removes the file when it is done;
a writer that locked a file another process removed in the meantime retries on the new one (inode check).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from rag.errors import ArtifactError

log = logging.getLogger(__name__)


class LockedError(ArtifactError):
    """Another process is writing the same artifact."""


def lock_path(target: str | os.PathLike) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 1 << 16)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def writer_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold the write lock of `target` (a folder to build or write) for the block; refuse when another live
    process holds it, naming that process."""
    import fcntl

    target = Path(target)
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            h = _read(fd)
            os.close(fd)
            raise LockedError(
                f"{target} is being written by another process (pid {h.get('pid', '?')} on {h.get('host', '?')}, "
                f"started {h.get('started', '?')}: {h.get('command', '?')}); wait for it to finish, or stop it and "
                f"rerun (an interrupted build or run resumes)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we locked it: lock the new one
    old = _read(fd)
    if old.get("pid") and old.get("pid") != os.getpid():
        log.warning("%s: taking over a lock left by pid %s (%s), which is no longer running", target, old["pid"],
                    old.get("command", "?"))
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(_holder()).encode())
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
