"""Engines for the heavy batch stages: local (this machine) or ray (a Ray cluster, optional extra `rag[ray]`)."""
from rag.engine.base import ENGINES, LOCAL, EngineConfig, engine_config
from rag.engine.resources import ActorResources, actor_resources
from rag.engine.run import ShardWorker, engine_session, run_shards
from rag.engine.shards import SHARD_ROWS, Shard, ShardLog, plan_shards, save_npy_atomic

__all__ = [
    "ENGINES", "LOCAL", "SHARD_ROWS", "ActorResources", "EngineConfig", "Shard", "ShardLog", "ShardWorker",
    "actor_resources", "engine_config", "engine_session", "plan_shards", "run_shards", "save_npy_atomic",
]
