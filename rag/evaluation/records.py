"""Per-question results of a run: an append-only JSONL file that survives Ctrl-C and kill -9.

records.jsonl, one JSON object per line, one line per (question, mode):
    qid, mode        mode = "closed" or "rag:<retriever name>"; the pair is unique in the file
    question, answers, count (int|null), status
    prediction, em, f1, contains, prompt_tokens, new_tokens, passages_dropped, passages_truncated
    pids             passage ids given to the reader (rag modes; [] closed-book)
    retrieved        the top-k retrieved passage ids (rag modes)
    first_hit        rank (1-based) of the first retrieved passage holding a gold answer within `depth`, or null
    depth            how many passages were retrieved and checked for the answer
Buckets are not stored: they are derived from `count` when a report is rendered, so edges can change later.

A batch of lines is written with one write() and fsync'ed: a kill leaves at most one torn last line (no
trailing newline), which `load()` cuts off; everything before it is complete.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from rag.errors import ArtifactError

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
Key = tuple[str, str]  # (qid, mode)


class RecordStore:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self, repair: bool = True) -> dict[Key, dict]:
        """All finished records by (qid, mode), in file order. A torn last line is discarded (and, with
        repair=True, cut from the file so later appends start on a clean line)."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if end < len(data):
            log.warning("%s: discarding a torn last line (%d bytes) left by an interrupted run", self.path, len(data) - end)
            if repair:
                with open(self.path, "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
        out: dict[Key, dict] = {}
        lines = data[:end].split(b"\n")[:-1]
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = (rec["qid"], rec["mode"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ArtifactError(
                    f"{self.path}:{i}: not a valid record ({e}); the file was edited or damaged. Remove that line "
                    f"(its question is then recomputed) or start the run afresh with --overwrite"
                ) from None
            if key in out:
                log.warning("%s:%d: duplicate record for %s; keeping the first", self.path, i, key)
                continue
            out[key] = rec
        return out

    def append(self, records: Iterable[dict]) -> int:
        """Write records as complete lines in one write, then fsync; returns how many."""
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
        if not lines:
            return 0
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        return len(lines)
