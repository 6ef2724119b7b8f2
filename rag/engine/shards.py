"""Shards: contiguous row ranges of an input, the unit of parallel work and of resuming.

A build works in `<out>.partial/` (a local build too: it is one shard). Each shard's output is written under
its own name (`shard-00003.npy`, ...) through a temporary file and a rename, so a worker killed mid-shard
leaves no output for it; `shards_done.json` lists the finished shards (written atomically after each one)
together with the key of the build, so a rerun of the same build skips them and redoes only the rest.
Outputs are keyed by shard, never appended, so a shard done twice (a retried worker) is overwritten, not
duplicated.

shards_done.json: {"key": <what the build is: inputs' fingerprints and parameters>,
                   "plan": [[start, stop], ...], "done": {"3": {...worker's record...}, ...}}
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.artifacts import write_json_atomic
from rag.errors import BadInputError

log = logging.getLogger(__name__)

DONE = "shards_done.json"
SHARD_ROWS = 50_000  # default rows per shard: a MiniLM shard is ~75 MB of vectors, a few minutes of one CPU


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # first row (or source number for per-file shards)
    stop: int  # one past the last row

    @property
    def name(self) -> str:
        return shard_name(self.index)

    def as_item(self) -> dict:
        return {"shard": self.index, "start": self.start, "stop": self.stop}


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def plan_shards(n_rows: int, shards: int | None = None, shard_rows: int = SHARD_ROWS) -> list[Shard]:
    """Split rows [0, n_rows) into `shards` near-equal ranges (default: ceil(n_rows / shard_rows) of them)."""
    if n_rows < 0:
        raise BadInputError(f"cannot shard {n_rows} rows")
    if shards is None:
        shards = max(1, math.ceil(n_rows / shard_rows))
    if shards < 1:
        raise BadInputError(f"shards must be >= 1, got {shards}")
    shards = max(1, min(shards, n_rows)) if n_rows else 1
    bounds = np.linspace(0, n_rows, shards + 1).round().astype(np.int64)
    return [Shard(i, int(a), int(b)) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


class ShardLog:
    """The finished shards of one build in `folder`; starts over when the folder holds another build."""

    def __init__(self, folder: str | os.PathLike, key: dict, plan: list[Shard]):
        self.path = Path(folder) / DONE
        self.key = key
        self.plan = [[s.start, s.stop] for s in plan]
        self.done: dict[int, dict] = {}
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                old = {}
            if old.get("key") == key and old.get("plan") == self.plan:
                self.done = {int(k): v for k, v in old.get("done", {}).items()}
                if self.done:
                    log.warning("%s: resuming, %d of %d shards already done", folder, len(self.done), len(plan))
            else:
                log.warning("%s: the partial build was for other inputs or settings; its shards are redone", folder)
        self._write()

    def pending(self, plan: list[Shard]) -> list[Shard]:
        return [s for s in plan if s.index not in self.done]

    def reset(self) -> None:
        """Forget every finished shard (their inputs changed)."""
        self.done.clear()
        self._write()

    def mark(self, index: int, record: dict) -> None:
        self.done[int(index)] = record
        self._write()

    def _write(self) -> None:
        write_json_atomic(self.path, {"key": self.key, "plan": self.plan, "done": {str(k): v for k, v in sorted(self.done.items())}})


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save through a temporary name and fsync, so the file is either complete or absent."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_atomic(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """fsync a finished temporary file, then rename it into place."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
