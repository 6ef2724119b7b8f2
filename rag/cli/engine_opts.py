"""The engine flags shared by the heavy batch commands: --exec-engine, --ray-address, --workers, --shards.

(`--engine` already names the BM25 engine of `rag index build` and the matching engine of the linkers.)
"""
from __future__ import annotations

import functools

import click

ENGINE_HELP = ("Where the heavy batch work runs: local (this machine's processes/threads) or ray (Ray Data actors on a "
               "Ray cluster, each loading its model or automaton once; pip install 'rag[ray]'). Both give the same result.")


def engine_options(shards: bool = True, own_workers: bool = False):
    """Adds the flags; the command receives `exec_engine` (rag.engine.EngineConfig) instead of them. own_workers: the
    command already has a --workers of its own (local processes), which then also sets the number of Ray actors."""

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, exec_engine, ray_address, **kwargs):
            from rag.engine import engine_config

            n = kwargs.get("workers") if own_workers else kwargs.pop("workers", None)
            # named exec_engine, not engine: `rag index build` passes a BM25 `engine` build option through **options
            kwargs["exec_engine"] = engine_config(exec_engine, ray_address, n, kwargs.pop("shards", None))
            return f(*args, **kwargs)

        if shards:
            wrapper = click.option("--shards", type=click.IntRange(min=1), default=None,
                                   help="Split the input into this many row-range shards (the unit of parallel work "
                                        "and of resuming); default about 50,000 passages each. Sharding applies to the "
                                        "local engine too.")(wrapper)
        if not own_workers:
            wrapper = click.option("--workers", type=click.IntRange(min=1), default=None,
                                   help="ray: number of actors (default one per CPU, or per GPU for encoders and "
                                        "readers when the cluster has GPUs).")(wrapper)
        wrapper = click.option("--ray-address", default=None, metavar="HOST:PORT",
                               help="Connect to this running Ray cluster (its head's HOST:6379, ray://HOST:10001, or auto); "
                                    "implies --exec-engine ray. Without it the ray engine starts a local Ray instance.")(wrapper)
        wrapper = click.option("--exec-engine", "exec_engine", type=click.Choice(["local", "ray"]), default="local",
                               show_default=True, help=ENGINE_HELP)(wrapper)
        return wrapper

    return deco
