"""Batch answer generation for evaluation runs, on the chosen engine, results in submission order.

A job is one batch of questions for one mode: (questions, passages shown per question or None for closed-book),
read by rag.pipeline.Pipeline.read.
    LocalGenerator  the run's pipeline here, one job after the other (the reader's own threads use the machine)
    RayGenerator    a pool of reader actors, each with the run's pipeline bound to its own reader (loaded once; a
                    GPU each when the cluster has them), answers a window of jobs in parallel; results still come
                    back in job order, so records are written in the same order, with the same content, as locally
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator, Sequence

from rag.types import Passage, Prediction, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.engine import EngineConfig
    from rag.evaluation.config import EvalConfig
    from rag.evaluation.timing import StageTimer
    from rag.pipeline import Pipeline
    from rag.readers.base import Reader

Job = tuple[list[Question], "list[list[Passage]] | None"]


def reader_info(reader: "Reader") -> dict:
    """What the run manifest records of the reader that answered."""
    inner = getattr(reader, "inner", reader)  # a TimedReader's wrapped reader
    return {"name": inner.name, "n_ctx": inner.n_ctx, "n_params": inner.n_params, "class": type(inner).__name__}


class LocalGenerator:
    parallelism = 1  # jobs worth preparing ahead of the reader

    def __init__(self, pipeline: "Pipeline", timer: "StageTimer"):
        self.pipeline, self.timer = pipeline, timer
        self.info = reader_info(pipeline.reader)

    def map(self, jobs: Sequence[Job]) -> Iterator[list[Prediction]]:
        timed = self.pipeline.reader  # a TimedReader: generation time is counted there, prompting here
        for qs, shown in jobs:
            t = time.perf_counter()
            g0 = timed.generation_seconds
            preds = self.pipeline.read(qs, shown)
            self.timer.add("prompting", time.perf_counter() - t - (timed.generation_seconds - g0), items=len(qs))
            yield preds

    def close(self, owned: bool) -> None:
        if owned:
            self.pipeline.close()


class ReaderActor:
    """One model per actor: `reader` (an opened reader, pickled; tests) or the run's reader settings."""

    def __init__(self, cfg: "EvalConfig", reader: "Reader | None", pipeline: "Pipeline", resources: dict):
        from rag.engine.run import limit_threads
        from rag.pipeline import open_reader

        threads = int(resources.get("threads") or 1)
        limit_threads(threads)
        if reader is None:
            r = replace(cfg.reader, device=resources.get("device", "cpu") if cfg.reader.device == "auto" else cfg.reader.device)
            if r.backend == "llama-cpp" and r.n_threads is None:
                r = replace(r, n_threads=threads)
            reader = open_reader(r)
        self.pipeline = pipeline.with_reader(reader)

    def info(self) -> dict:
        return reader_info(self.pipeline.reader)

    def answer(self, job: Job) -> list[Prediction]:
        return self.pipeline.read(*job)


class RayGenerator:
    def __init__(self, engine: "EngineConfig", cfg: "EvalConfig", reader: "Reader | None", pipeline: "Pipeline",
                 timer: "StageTimer"):
        import ray

        from rag.engine.ray_engine import OrderedPool, plan_resources

        # a served model (openai backend) computes on its server: its actors need no GPU of their own
        uses_gpu = cfg.reader.device != "cpu" and cfg.reader.backend not in ("fake", "openai")
        res = plan_resources(engine, uses_gpu, n_items=engine.workers or 10**9)
        # the actors only read: passages are chosen (and sentences selected) here, so no corpus statistics travel
        shipped = replace(pipeline, reader=None, doc_freq=None)
        with timer.stage("load"):
            self.pool = OrderedPool(ReaderActor, {"cfg": cfg, "reader": reader, "pipeline": shipped,
                                                  "resources": {"threads": res.threads, "device": res.device}}, res)
            self.info = ray.get(self.pool.actors[0].info.remote())
        self.parallelism = 2 * res.workers  # jobs in flight: every actor busy while finished ones are written
        self.timer = timer

    def map(self, jobs: Sequence[Job]) -> Iterator[list[Prediction]]:
        it = self.pool.map("answer", list(jobs))
        for qs, _ in jobs:
            t = time.perf_counter()
            preds = next(it)
            self.timer.add("generation", time.perf_counter() - t, items=len(qs))
            yield preds

    def close(self, owned: bool) -> None:
        self.pool.close()
