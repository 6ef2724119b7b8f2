"""What `backend: auto` measures on this machine before it trusts an estimate (rag.readers.auto's rule 3 and 5).

    speed_timings(model, [("llama-cpp", "gguf"), ("torch", "bf16")])  # {"llama-cpp gguf": {"seconds", ...}, ...}
    model_room(model)   # {"params", "memory_bytes", "disk_bytes", "dequantized"} for a GGUF model, or None

Timings: each backend loaded alone, warmed up, then an evaluation's calls timed twice (`calibration_prompts`),
the faster pass kept; cached as JSON under $RAG_CACHE/machine/ (else ~/.cache/rag/machine/), keyed by CPU, threads,
library versions, the model file and the backends, so a machine pays once per model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from rag.device import cpu_profile, machine_cache_dir

log = logging.getLogger(__name__)

TIMINGS_FORMAT = 2

# ---- what fits


def model_room(model: str) -> dict | None:
    """For a GGUF model: its parameter count (from the file's header), the memory available now, and the free
    disk of the cache that would hold its dequantized copy (and whether that copy exists); None where unknown."""
    import shutil

    from rag.readers.models import NAMED_MODELS, cache_dir, gguf_param_count, model_path

    try:
        path = model_path(model) if model in NAMED_MODELS else Path(model).expanduser()
        params = gguf_param_count(path)
        from rag.artifacts import MANIFEST
        from rag.readers.transformers import dequantized_dir

        done = (dequantized_dir(path) / MANIFEST).exists()
        root = cache_dir()
        while not root.exists() and root != root.parent:
            root = root.parent
        disk = shutil.disk_usage(root).free
    except Exception as e:  # an unreadable header is the loader's error to report, not this estimate's
        log.debug("backend auto: no size estimate for %s (%s)", model, e)
        return None
    memory = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"params": params, "memory_bytes": memory, "disk_bytes": disk, "dequantized": done}


# ---- timing backends on this machine


def calibration_prompts(prompt_format: str) -> tuple[list[list[str]], list[list[str]]]:
    """(warm-up calls, timed calls), each call a list of prompts shaped as an evaluation's: 3 built-in
    demonstrations, then a closed-book call (2 questions) and a retrieval call (4 prompts of k = 3 passages of
    ~80 words each, none shared between prompts). The warm-up calls cache the demonstrations and pay first-call
    costs, as the first batch of a run does."""
    from rag.readers.prompts import BUILTIN_DEMOS, FORMATS
    from rag.types import Passage

    fmt = FORMATS.get(prompt_format)
    demos, rest = BUILTIN_DEMOS[:3], BUILTIN_DEMOS[3:]
    pool = [d.passage for d in rest]

    def passages(seed: int) -> list:
        out = []
        for j in range(3):
            parts = [pool[(3 * seed + j + m) % len(pool)] for m in range(3)]
            out.append(Passage(f"calibration-{seed}-{j}#0", f"calibration-{seed}-{j}", parts[0].title,
                               " ".join(p.text for p in parts)))
        return out

    qs = [d.question for d in rest]
    warm = [[fmt.render(demos, qs[0], [])], [fmt.render(demos, qs[0], passages(0))]]
    timed = [[fmt.render(demos, q, []) for q in qs[1:3]],
             [fmt.render(demos, qs[1 + i % 2], passages(1 + i)) for i in range(4)]]
    return warm, timed


TIMED_PASSES = 2  # the fastest pass counts: a burst of other work on a shared machine slows one pass, not both


def time_backend(model: str, backend: str, precision: str) -> dict:
    """{"seconds": the timed calibration calls (fastest of TIMED_PASSES), "passes_s", "load_s"} for `model` on
    `backend` in this process (loaded, timed, closed)."""
    from rag.readers.base import READERS

    opts = {"precision": precision, "device": "cpu"} if backend in ("torch", "ct2") else {}
    t = time.perf_counter()
    reader = READERS.get(backend).load(model, **opts)
    load_s = time.perf_counter() - t
    try:
        warm, timed = calibration_prompts(reader.prompt_format)
        for call in warm:
            reader.generate_batch(call, 16)
        passes = []
        for _ in range(TIMED_PASSES):
            t = time.perf_counter()
            for call in timed:
                reader.generate_batch(call, 16)
            passes.append(round(time.perf_counter() - t, 3))
    finally:
        reader.close()
    return {"seconds": min(passes), "passes_s": passes, "load_s": round(load_s, 2)}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("llama_cpp_python", "torch", "transformers", "ctranslate2"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _model_identity(model: str) -> list:
    """What names the weights: a named model's pinned file, else the path's size and mtime, else the hub id."""
    from rag.readers.models import NAMED_MODELS

    if model in NAMED_MODELS:
        m = NAMED_MODELS.get(model)
        return [model, m.sha256 or m.file]
    path = Path(model).expanduser()
    if path.exists():
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    return [model]


def timings_path(model: str, backends: list[tuple[str, str]], profile: dict) -> Path:
    key = json.dumps([TIMINGS_FORMAT, profile.get("cpu"), profile.get("bf16_flags"), profile.get("int8_flags"),
                      profile.get("threads"), _versions(), _model_identity(model), sorted(backends)])
    return machine_cache_dir() / f"speed-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def speed_timings(model: str, backends: list[tuple[str, str]], profile: dict | None = None, refresh: bool = False) -> dict:
    """f"{backend} {precision}" -> {"seconds", "load_s"} for `model` on this machine: the calibration calls
    timed once per (machine, library versions, model file, backends), one backend loaded at a time, and cached."""
    from rag.artifacts import write_json_atomic

    profile = profile if profile is not None else cpu_profile()
    path = timings_path(model, backends, profile)
    if not refresh and path.exists():
        try:
            return json.loads(path.read_text())["timings"]
        except (ValueError, KeyError):
            log.warning("ignoring an unreadable backend timing file %s", path)
    log.warning("backend auto: timing %s on %s once on this machine (cached in %s)",
                " and ".join(f"{b} {p}" for b, p in backends), model, path.parent)
    load = [os.getloadavg()[0]]
    timings = {f"{b} {p}": time_backend(model, b, p) for b, p in backends}
    load.append(os.getloadavg()[0])
    record = {"format": TIMINGS_FORMAT, "model": model, "identity": _model_identity(model), "versions": _versions(),
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_1m": load, "timings": timings}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)
    except OSError as e:  # a read-only cache only costs the measurement next time
        log.warning("could not cache the backend timings at %s: %s", path, e)
    return timings
