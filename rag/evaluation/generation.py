"""Batch answer generation for evaluation runs, on the chosen engine, results in submission order.

A job is one batch of questions for one mode: (questions, passages per question or None for closed-book).
    open_reader     the run's reader (cfg.reader), opened here (local engine) or in each actor (ray)
    LocalGenerator  answers each job here with the run's reader, one after the other (the reader's own
                    threads use the machine)
    RayGenerator    a pool of reader actors (each loads the model once; a GPU each when the cluster has them)
                    answers a window of jobs in parallel; results still come back in job order, so records are
                    written in the same order, with the same content, as by the local engine
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator, Sequence

from rag.errors import BadInputError
from rag.types import Passage, Prediction, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.engine import EngineConfig
    from rag.evaluation.config import EvalConfig
    from rag.evaluation.timing import StageTimer
    from rag.readers.base import Reader

Job = tuple[list[Question], "list[list[Passage]] | None"]


def open_reader(cfg: "EvalConfig") -> "Reader":
    """The run's reader (cfg.reader), opened in this process."""
    from rag.readers import load_reader

    r = cfg.reader
    options = {"device": r.device, **r.options}
    if r.n_ctx is not None:
        options["n_ctx"] = r.n_ctx
    if r.n_threads is not None:
        if r.backend != "llama-cpp":
            raise BadInputError("reader.n_threads applies to the llama-cpp backend only")
        options["n_threads"] = r.n_threads
    return load_reader(r.model, backend=r.backend, **options)


class LocalGenerator:
    parallelism = 1  # jobs worth preparing ahead of the reader

    def __init__(self, timed, demos, fmt, cfg: "EvalConfig", timer: "StageTimer"):
        self.timed, self.demos, self.fmt, self.cfg, self.timer = timed, demos, fmt, cfg, timer
        self.info = timed.info

    def map(self, jobs: Sequence[Job]) -> Iterator[list[Prediction]]:
        from rag.readers import answer

        for qs, passages in jobs:
            t = time.perf_counter()
            g0 = self.timed.generation_seconds
            preds = answer(self.timed, qs, passages, demos=self.demos, prompt_format=self.fmt,
                           max_new_tokens=self.cfg.reader.max_new_tokens, batch_size=self.cfg.reader.batch_size)
            self.timer.add("prompting", time.perf_counter() - t - (self.timed.generation_seconds - g0), items=len(qs))
            yield preds

    def close(self, owned: bool) -> None:
        if owned:
            self.timed.close()


class ReaderActor:
    """One model per actor: `reader` (an opened reader, pickled; tests) or the run's reader settings."""

    def __init__(self, cfg: "EvalConfig", reader: "Reader | None", demos, fmt, resources: dict):
        from rag.engine.run import limit_threads

        threads = int(resources.get("threads") or 1)
        limit_threads(threads)
        if reader is None:
            r = replace(cfg.reader, device=resources.get("device", "cpu") if cfg.reader.device == "auto" else cfg.reader.device)
            if r.backend == "llama-cpp" and r.n_threads is None:
                r = replace(r, n_threads=threads)
            reader = open_reader(replace(cfg, reader=r))
        self.reader, self.demos, self.fmt, self.cfg = reader, demos, fmt, cfg

    def info(self) -> dict:
        r = self.reader
        return {"name": r.name, "n_ctx": r.n_ctx, "n_params": r.n_params, "class": type(r).__name__}

    def answer(self, job: Job) -> list[Prediction]:
        from rag.readers import answer

        qs, passages = job
        return answer(self.reader, qs, passages, demos=self.demos, prompt_format=self.fmt,
                      max_new_tokens=self.cfg.reader.max_new_tokens, batch_size=self.cfg.reader.batch_size)


class RayGenerator:
    def __init__(self, engine: "EngineConfig", cfg: "EvalConfig", reader: "Reader | None", demos, fmt, timer: "StageTimer"):
        import ray

        from rag.engine.ray_engine import OrderedPool, plan_resources

        # a served model (openai backend) computes on its server: its actors need no GPU of their own
        uses_gpu = cfg.reader.device != "cpu" and cfg.reader.backend not in ("fake", "openai")
        res = plan_resources(engine, uses_gpu, n_items=engine.workers or 10**9)
        with timer.stage("load"):
            self.pool = OrderedPool(ReaderActor, {"cfg": cfg, "reader": reader, "demos": demos, "fmt": fmt,
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
