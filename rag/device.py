"""Pick the torch device for encoders and readers: "auto" | "cpu" | "cuda" | "cuda:N"."""
from __future__ import annotations

import logging
import os
import re

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
