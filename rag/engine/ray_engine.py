"""Running shards on Ray: connecting to a cluster, Ray Data over shard items, and ordered actor pools.

Only imported when the ray engine is chosen; `ray` is the optional extra `rag[ray]`.
Every node must be able to import this version of rag and to read the inputs and write the outputs at the
same paths (a shared filesystem): workers read their shard of the passage store themselves and write their
shard's output next to the build, which keeps the driver's memory and the object store out of the data path.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator

from rag.engine.base import EngineConfig
from rag.engine.resources import ActorResources, actor_resources
from rag.engine.shards import Shard
from rag.errors import RagError, require

log = logging.getLogger(__name__)

# a worker that dies (killed, out of memory, node lost) is restarted and its shard retried this many times;
# bounded, so a shard that kills every worker fails the build instead of looping forever
MAX_RETRIES = 3


class ClusterUnreachableError(RagError):
    """--ray-address names a cluster that cannot be reached."""


def _ray():
    return require("ray", "ray")


def _host_port(address: str) -> tuple[str, int] | None:
    """'ray://h:10001' / 'h:6379' / 'h' -> (host, port); None for 'auto' / 'local' (Ray finds those itself)."""
    a = address.strip()
    if a in ("auto", "local"):
        return None
    if "://" in a:
        a = a.split("://", 1)[1]
    a = a.rstrip("/")
    host, sep, port = a.rpartition(":")
    if not sep:
        return a, 6379
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise RagError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto") from None


def check_reachable(address: str, timeout: float) -> None:
    """Fail in `timeout` seconds, with what to do, when nothing listens at the address (ray.init would retry for a minute)."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {address} ({e.__class__.__name__}: {e or 'timed out'}). Start its head "
            f"node with `ray start --head --port {hp[1]}` (and workers with `ray start --address {hp[0]}:{hp[1]}`), "
            f"check the address and firewall, or leave out --ray-address to start a local Ray instance"
        ) from None


@contextlib.contextmanager
def ray_session(engine: EngineConfig) -> Iterator:
    """Connect to engine.address, or start a local Ray instance; reuse one already initialized (and leave it up)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
    if engine.address:
        check_reachable(engine.address, engine.connect_timeout)
        kwargs["address"] = engine.address
    else:
        # workers of a local instance import the same rag source tree as this process
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    t0 = time.perf_counter()
    # something that accepts TCP but is no Ray head (a proxy, another service) makes ray.init retry for ~20 s;
    # Ray reads this budget (about one attempt per second) when it connects
    wait = "RAY_gcs_server_port_wait_time_s"
    own_wait = engine.address is not None and wait not in os.environ
    if own_wait:
        os.environ[wait] = str(max(1, math.ceil(engine.connect_timeout)))
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        if engine.address:
            raise ClusterUnreachableError(
                f"no Ray cluster answered at {engine.address} within {engine.connect_timeout:g} s ({e}); check the "
                f"address (the head's `ray start --head` prints it) or leave out --ray-address to start a local Ray instance"
            ) from e
        raise ClusterUnreachableError(f"could not start a local Ray instance: {e}") from e
    finally:
        if own_wait:
            os.environ.pop(wait, None)
    log.info("ray: connected in %.1f s; cluster %s", time.perf_counter() - t0, ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_resources() -> dict:
    return dict(_ray().cluster_resources())


def plan_resources(engine: EngineConfig, uses_gpu: bool, n_items: int) -> ActorResources:
    res = actor_resources(cluster_resources(), engine.workers, uses_gpu)
    if res.workers > n_items >= 1:  # no idle actors holding a model for nothing
        res = ActorResources(n_items, res.num_cpus, res.num_gpus, res.threads)
    return res


def map_shards(worker_cls, kwargs: dict, shards: Iterable[Shard], res: ActorResources) -> Iterator[dict]:
    """Ray Data: shard items -> map_batches(worker_cls actors, one shard per call); yields each worker's record
    as its shard finishes (any order). Each actor is constructed once (loading its model) and serves many shards."""
    ray = _ray()
    import ray.data  # noqa: F401

    items = [s.as_item() for s in shards]
    if not items:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    with warnings.catch_warnings():
        # bounded retries are only settable through ray_remote_args, deprecated in 2.60 (the default retries forever)
        warnings.simplefilter("ignore", DeprecationWarning)
        out = ds.map_batches(
            worker_cls,
            fn_constructor_kwargs=kwargs,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=res.workers),
            max_restarts=MAX_RETRIES,
            max_task_retries=MAX_RETRIES,
            **res.ray_args(),
        )
    for row in out.iter_rows():
        yield json.loads(row["record"])


class OrderedPool:
    """Long-lived actors (a model loaded once each) mapping jobs in order: job i's result is yielded i-th while
    later jobs already run. For loops that interleave driver work with the actors' (evaluation batches)."""

    def __init__(self, actor_cls, kwargs: dict, res: ActorResources):
        ray = _ray()
        from ray.util import ActorPool

        remote = ray.remote(max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES, **res.ray_args())(actor_cls)
        self.actors = [remote.remote(**kwargs) for _ in range(res.workers)]
        self.pool = ActorPool(self.actors)
        self.res = res

    def map(self, method: str, jobs: list) -> Iterator:
        return self.pool.map(lambda a, job: getattr(a, method).remote(job), jobs)

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)
        self.actors = []
