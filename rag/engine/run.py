"""Run a stage's shards on the chosen engine, recording each finished shard so a rerun resumes.

Every sharded stage is written once, as plan -> work per shard -> merge: the driver plans the shards
(EngineConfig.plan), run_shards does the pending ones, and the driver merges their outputs. A stage defines a
ShardWorker subclass: constructed once per worker (loads the encoder, linker automaton, ...), then `run(shard)`
per shard, which writes that shard's output atomically and returns a small JSON-able record. Local engine: one
worker in this process, shards in order (a local build without --shards is one shard of the whole input).
Ray engine: a pool of actors over Ray Data (rag.engine.ray_engine), shards in any order.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from abc import ABC, abstractmethod
from typing import Callable, Iterator

from rag.engine.base import EngineConfig
from rag.engine.shards import Shard, ShardLog


class ShardWorker(ABC):
    """resources: None (local: use this machine's defaults) or {"threads": int, "device": "cpu" | "cuda"} (ray)."""

    progress: Callable[..., None] | None = None  # the local engine's progress callback (set by run_shards)
    _amounts: list | None = None  # what report() was given during the current shard, summed

    def __init__(self, resources: dict | None = None):
        self.resources = resources
        if resources and resources.get("threads"):
            limit_threads(int(resources["threads"]))

    def report(self, *amounts) -> None:
        """Progress within a shard (rows encoded, documents read, ...): passed to run_shards' `progress` at once on
        the local engine; on ray, where actors cannot call the driver, summed and passed on when the shard ends."""
        self._amounts = list(amounts) if self._amounts is None else [a + b for a, b in zip(self._amounts, amounts)]
        if self.progress is not None:
            self.progress(*amounts)

    @abstractmethod
    def run(self, shard: Shard) -> dict:
        """Do one shard, write its output atomically, return a JSON-able record of it."""

    def __call__(self, batch: dict) -> dict:
        # Ray Data's map_batches protocol: a batch of one shard item in, one record out
        import json

        shard = Shard(int(batch["shard"][0]), int(batch["start"][0]), int(batch["stop"][0]))
        return {"record": [json.dumps(self.timed(shard))]}

    def timed(self, shard: Shard) -> dict:
        from rag.errors import RagError

        t0 = time.perf_counter()
        self._amounts = None
        try:
            rec = self.run(shard)
        except RagError as e:  # the user's error (bad input): reported as is by the driver, never retried
            return {"shard": shard.index, "error": str(e), "error_type": type(e).__name__}
        if self._amounts is not None:
            rec = {**rec, "progress": self._amounts}
        return {"shard": shard.index, "start": shard.start, "stop": shard.stop, "seconds": round(time.perf_counter() - t0, 3),
                "worker": f"{socket.gethostname()}:{os.getpid()}", **rec}


def limit_threads(n: int) -> None:
    """A ray actor gets n CPUs: keep torch / BLAS / OpenMP from spinning a thread per core of the node. (torch is
    only told if already imported: importing it costs seconds in actors that never use it; it reads the variable.)"""
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


@contextlib.contextmanager
def engine_session(engine: EngineConfig) -> Iterator[None]:
    """Nothing for the local engine; a Ray connection (or a local Ray instance) for the ray engine."""
    if not engine.is_ray:
        yield
        return
    from rag.engine.ray_engine import ray_session

    with ray_session(engine):
        yield


def run_shards(engine: EngineConfig, worker_cls: type[ShardWorker], kwargs: dict, plan: list[Shard], log: ShardLog,
               uses_gpu: bool = False, progress=None) -> dict[int, dict]:
    """Run the pending shards of `plan` (inside engine_session); returns every finished shard's record by index.

    `progress(*amounts)` gets what the workers report (ShardWorker.report): as they go on the local engine, per
    finished shard on ray. With uses_gpu the ray actors ask for GPUs when the cluster has them
    (rag.engine.resources)."""
    todo = log.pending(plan)
    if todo:
        if engine.is_ray:
            from rag.engine.ray_engine import map_shards, plan_resources

            res = plan_resources(engine, uses_gpu, len(todo))
            records = map_shards(worker_cls, {**kwargs, "resources": {"threads": res.threads, "device": res.device}}, todo, res)
        else:
            worker = worker_cls(**kwargs)
            worker.progress = progress
            records = (worker.timed(s) for s in todo)
        for rec in records:
            if "error" in rec:
                from rag import errors

                raise getattr(errors, rec.get("error_type", ""), errors.RagError)(rec["error"])
            log.mark(rec["shard"], rec)
            if engine.is_ray and progress is not None and rec.get("progress"):
                progress(*rec["progress"])
    return log.done
