"""Wall time and peak memory of a run, broken down by stage.

Stages: load (questions, counts, reader, indexes), retrieval (search + fetching passages), prompting (building
and fitting prompts, counting tokens), generation (the reader's generate_batch), scoring (EM/F1/contains and
has_answer for recall@k), writing (records + fsync), report (tables and plots).

timing.json (one entry per invocation of `rag eval run`, so a resumed run shows each session):
    sessions: [{started, wall_s, peak_rss_mb, stages: {name: {seconds, calls, items, peak_rss_mb}}}]
    total:    {wall_s, stages: {name: {seconds, calls, items}}}  summed over sessions
`peak_rss_mb` of a stage is the process's high-water mark (ru_maxrss) when that stage last ended: the peak
reached by then, so the first stage after which it jumps is the one that needed the memory.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rag.readers.base import Generation, Reader

STAGES = ("load", "retrieval", "prompting", "generation", "scoring", "writing", "report")


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


@dataclass
class Stage:
    seconds: float = 0.0
    calls: int = 0
    items: int = 0  # questions, prompts or passages handled, whichever the stage counts
    peak_rss_mb: float = 0.0


@dataclass
class StageTimer:
    stages: dict[str, Stage] = field(default_factory=lambda: {s: Stage() for s in STAGES})
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    t0: float = field(default_factory=time.perf_counter)

    def add(self, name: str, seconds: float, items: int = 0, calls: int = 1) -> None:
        s = self.stages.setdefault(name, Stage())
        s.seconds += seconds
        s.calls += calls
        s.items += items
        s.peak_rss_mb = peak_rss_mb()

    @contextlib.contextmanager
    def stage(self, name: str, items: int = 0):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t, items)

    def session(self) -> dict:
        return {
            "started": self.started,
            "wall_s": round(time.perf_counter() - self.t0, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "stages": {
                k: {"seconds": round(v.seconds, 3), "calls": v.calls, "items": v.items, "peak_rss_mb": round(v.peak_rss_mb, 1)}
                for k, v in self.stages.items()
            },
        }

    def write(self, path: str | Path, extra: dict | None = None) -> dict:
        """Append this session to timing.json (atomically) and refresh the totals; returns the whole object."""
        from rag.artifacts import write_json_atomic

        path = Path(path)
        doc = {"sessions": []}
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                doc = {"sessions": []}
        session = self.session()
        if extra:
            session.update(extra)
        doc["sessions"] = [*doc.get("sessions", []), session]
        total: dict = {"wall_s": 0.0, "peak_rss_mb": 0.0, "stages": {}}
        for s in doc["sessions"]:
            total["wall_s"] += s["wall_s"]
            total["peak_rss_mb"] = max(total["peak_rss_mb"], s.get("peak_rss_mb", 0.0))
            for k, v in s["stages"].items():
                t = total["stages"].setdefault(k, {"seconds": 0.0, "calls": 0, "items": 0})
                t["seconds"] = round(t["seconds"] + v["seconds"], 3)
                t["calls"] += v["calls"]
                t["items"] += v["items"]
        total["wall_s"] = round(total["wall_s"], 3)
        doc["total"] = total
        write_json_atomic(path, doc)
        return doc


class TimedReader(Reader):
    """Wraps a reader so time inside generate_batch counts as "generation" (the rest of answering is prompting)."""

    def __init__(self, inner: Reader, timer: StageTimer):
        self.inner = inner
        self.timer = timer
        self.name = inner.name
        self.n_ctx = inner.n_ctx
        self.n_params = inner.n_params
        self.prompt_format = inner.prompt_format
        self.generation_seconds = 0.0  # running total, read by the runner to split answering time

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int = 16) -> list[Generation]:
        t = time.perf_counter()
        out = self.inner.generate_batch(prompts, max_new_tokens)
        dt = time.perf_counter() - t
        self.generation_seconds += dt
        self.timer.add("generation", dt, items=len(prompts))
        return out

    def generate_scored_batch(self, prompts, golds, max_new_tokens: int = 16) -> list[Generation]:
        t = time.perf_counter()
        out = self.inner.generate_scored_batch(prompts, golds, max_new_tokens)
        dt = time.perf_counter() - t
        self.generation_seconds += dt
        self.timer.add("generation", dt, items=len(prompts))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def score_batch(self, prompts, continuations):
        t = time.perf_counter()
        out = self.inner.score_batch(prompts, continuations)
        self.timer.add("scoring", time.perf_counter() - t, items=len(prompts))
        return out

    @classmethod
    def load(cls, model: str, **options) -> "TimedReader":  # pragma: no cover - wraps an opened reader instead
        raise TypeError("TimedReader wraps an opened reader: TimedReader(reader, timer)")

    def close(self) -> None:
        self.inner.close()
