"""What each Ray actor asks the cluster for: a pure function of the cluster's resources (unit-tested)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from rag.errors import BadInputError


@dataclass(frozen=True)
class ActorResources:
    workers: int  # actors in the pool
    num_cpus: float  # per actor
    num_gpus: float  # per actor; 0 on a CPU-only cluster or for a CPU stage
    threads: int  # intra-op threads an actor should use (torch / llama.cpp), = its whole CPUs

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus > 0 else "cpu"

    def ray_args(self) -> dict:
        out = {"num_cpus": self.num_cpus}
        if self.num_gpus > 0:
            out["num_gpus"] = self.num_gpus
        return out


def actor_resources(cluster: dict, workers: int | None = None, uses_gpu: bool = False) -> ActorResources:
    """Resources per actor from `ray.cluster_resources()` ({"CPU": 16.0, "GPU": 2.0, ...}).

    GPU stages (encoder, reader) on a cluster with GPUs: one actor per GPU by default, each asking for a whole
    GPU; more workers than GPUs share them (num_gpus = GPUs / workers, so Ray packs them) and fewer use one
    each. CPU stages, or no GPU in the cluster: one actor per CPU by default, the CPUs split evenly among them.
    """
    cpus = float(cluster.get("CPU", 0) or 0)
    gpus = float(cluster.get("GPU", 0) or 0)
    if cpus < 1:
        raise BadInputError(f"the Ray cluster reports {cpus:g} CPUs; at least one is needed")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise BadInputError(f"workers must be a positive integer, got {workers!r}")
    if uses_gpu and gpus > 0:
        n = workers or max(1, int(gpus))
        per_gpu = 1.0 if n <= gpus else gpus / n
        # a GPU actor still needs a CPU to feed it; leave the rest of the CPUs to the CPU stages around it
        per_cpu = max(1.0, math.floor(cpus / n)) if n <= cpus else cpus / n
        return ActorResources(n, per_cpu, _round(per_gpu), max(1, int(per_cpu)))
    n = workers or max(1, int(cpus))
    per_cpu = float(max(1, math.floor(cpus / n))) if n <= cpus else cpus / n
    return ActorResources(n, _round(per_cpu), 0.0, max(1, int(per_cpu)))


def _round(x: float) -> float:
    # Ray accepts at most 4 decimals for fractional resources; round down so n actors always fit
    return math.floor(x * 10_000) / 10_000
