"""The engine setting of the heavy batch stages: `local` (this machine) or `ray` (a Ray cluster).

Parsed once at the edge (CLI flags, or the `engine:` block of an eval preset) into an EngineConfig that the
stages take as an explicit argument. Stages that run on Ray: passage building (one shard per source file),
dense encoding and indexing (row-range shards), corpus entity linking (row-range shards), and batch answer
generation in evaluation runs (question batches over reader actors).
"""
from __future__ import annotations

from dataclasses import dataclass

from rag.engine.shards import Shard, plan_shards
from rag.errors import BadInputError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineConfig:
    kind: str = "local"  # "local" | "ray"
    address: str | None = None  # ray: an existing cluster ("host:6379", "ray://host:10001", "auto"); None: start one here
    workers: int | None = None  # parallel workers (actors); None: local default / every CPU (or GPU) of the cluster
    shards: int | None = None  # row-range shards of the input; None: about SHARD_ROWS rows each
    connect_timeout: float = 10.0  # seconds to wait for --ray-address before failing

    def __post_init__(self):
        if self.kind not in ENGINES:
            raise BadInputError(f"unknown engine {self.kind!r}; choose one of: {', '.join(ENGINES)}")
        for name in ("workers", "shards"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise BadInputError(f"engine {name} must be a positive integer, got {v!r}")
        if self.address is not None and self.kind != "ray":
            raise BadInputError("--ray-address needs --exec-engine ray")
        if not self.connect_timeout > 0:
            raise BadInputError(f"engine connect_timeout must be positive, got {self.connect_timeout!r}")

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"

    @property
    def sharded(self) -> bool:
        """Whether a stage splits its input into several shards: always on ray, on the local engine when `shards`
        is set. Otherwise the whole input is one shard, done in this process, and the output has no shard layout."""
        return self.is_ray or self.shards is not None

    def plan(self, n_rows: int, shards: int | None = None) -> list[Shard]:
        """The shards of a stage's input of n_rows rows: `shards` (default: self.shards, else about SHARD_ROWS rows
        each) row ranges when sharded, else one shard of every row."""
        if not self.sharded:
            return [Shard(0, 0, n_rows)]
        return plan_shards(n_rows, shards or self.shards)

    def as_dict(self) -> dict:
        """For manifests: how an artifact was built (never part of its identity: both engines give the same result)."""
        return {"kind": self.kind, "address": self.address, "workers": self.workers, "shards": self.shards}


LOCAL = EngineConfig()


def engine_config(kind: str = "local", address: str | None = None, workers: int | None = None,
                  shards: int | None = None) -> EngineConfig:
    """From CLI flags: an address alone implies the ray engine."""
    if address and kind == "local":
        kind = "ray"
    return EngineConfig(kind=kind, address=address or None, workers=workers, shards=shards)
