"""Pick the torch device for encoders and readers ("auto" | "cpu" | "cuda" | "cuda:N"), and what this CPU's
matrix units do fast: `cpu_profile()` (flags and torch matmul peaks per precision, measured once per machine
and cached as JSON under $RAG_CACHE/machine/, else ~/.cache/rag/machine/) and `choose_cpu_precision`."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import statistics
import time
from pathlib import Path

from rag.errors import BadInputError, require

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; explicit choices are checked, not silently changed."""
    device = (device or "auto").strip().lower()
    if not _DEVICE.match(device):
        raise BadInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device == "cpu":
        return device
    torch = require("torch", "dense")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BadInputError("device 'mps' requested but torch reports no MPS support; use --device cpu or auto")
        return device
    if not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu or auto")
    if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise BadInputError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def cpu_threads() -> int:
    """Cores this process may run on (respects taskset / container CPU sets, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def use_all_cores() -> int:
    """Give torch's intra-op pool every available core (its default can be the physical-core count)."""
    torch = require("torch", "dense")
    n = cpu_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.debug("torch intra-op threads set to %d", n)
    return n


# ---- what the CPU's matrix units do fast

PROFILE_FORMAT = 1
BF16_MIN_GAIN = 1.2  # bf16 matmul must beat fp32 by this much to be used
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX512-BF16, ARM (Features: bf16)
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm")  # int8 dot-product units (x86 AMX / VNNI, ARM)


def cpu_info(cpuinfo: str | None = None) -> dict:
    """{"model": CPU model name, "flags": sorted flags} from /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return {"model": model, "flags": sorted(flags)}


def has_bf16_units(flags) -> bool:
    return any(f in set(flags) for f in BF16_FLAGS)


def matmul_gflops_of(a, b, repeats: int = 5, warmup: int = 2) -> float:
    """Median GFLOP/s of `a @ b` for square n x n operands (torch tensors or numpy arrays), after `warmup` calls."""
    for _ in range(warmup):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * a.shape[0] ** 3 / statistics.median(times) / 1e9


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n torch matmul in `dtype` ("fp32" / "bf16"), after two warm-up calls (the
    first bf16 call runs at about half speed)."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dt)
    b = torch.randn(n, n, generator=g).to(dt)
    return matmul_gflops_of(a, b, repeats)


def machine_cache_dir() -> Path:
    """Where measurements of this machine are cached: $RAG_CACHE/machine, else ~/.cache/rag/machine."""
    base = os.environ.get("RAG_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "rag") / "machine"


def _profile_path(info: dict, threads: int, torch_version: str) -> Path:
    key = json.dumps([info["model"], info["flags"], threads, torch_version, PROFILE_FORMAT])
    return machine_cache_dir() / f"cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def cpu_profile(refresh: bool = False) -> dict:
    """This CPU's facts and torch matmul peaks, measured once and cached (see the module doc)."""
    import torch

    from rag.artifacts import write_json_atomic

    threads = use_all_cores()
    info = cpu_info()
    path = _profile_path(info, threads, torch.__version__)
    if not refresh and path.exists():
        try:
            return {**json.loads(path.read_text()), "cached": True}
        except ValueError:
            log.warning("ignoring an unreadable machine profile %s", path)
    bf16_units = has_bf16_units(info["flags"])
    peaks = {"fp32": matmul_gflops("fp32")}
    # a CPU without bf16 instructions emulates it: not worth the measuring time
    peaks["bf16"] = matmul_gflops("bf16") if bf16_units else None
    profile = {
        "format": PROFILE_FORMAT,
        "cpu": info["model"],
        "bf16_flags": [f for f in BF16_FLAGS if f in info["flags"]],
        "int8_flags": [f for f in INT8_FLAGS if f in info["flags"]],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": threads,
        "matmul_gflops": peaks,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_1m": os.getloadavg()[0],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, profile)
    except OSError as e:  # a read-only cache only costs the measurement next time
        log.warning("could not cache the machine profile at %s: %s", path, e)
    return {**profile, "cached": False}


def choose_cpu_precision(profile: dict) -> tuple[str, str]:
    """(precision, reason) for torch on this CPU: bf16 only where hardware has it and it measures faster."""
    peaks = profile["matmul_gflops"]
    if not profile.get("bf16_flags"):
        return "fp32", "no bf16 matrix instructions on this CPU (no amx_bf16 / avx512_bf16 flag)"
    bf16 = peaks.get("bf16") or 0.0
    gain = bf16 / peaks["fp32"]
    if gain < BF16_MIN_GAIN:
        return "fp32", f"bf16 matmul only {gain:.2f}x fp32 here (< {BF16_MIN_GAIN})"
    return "bf16", f"bf16 matmul {gain:.2f}x fp32 here ({', '.join(profile['bf16_flags'])})"
