"""The log a dynamics condition writes and its readers: one JSON line per logged update.

    log.jsonl   {"u": update, "lp": [target log-probability of every probe, in probes.jsonl order], ...}

Shared by the trainer (rag.world.dynamics) and the measures (rag.world.dynamics_report), which must not import
each other.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.world.generator import read_jsonl

SCENARIOS = ("duplicate", "paraphrase", "once")
LOG = "log.jsonl"


def load_log(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(logged updates (n,), probe log-probabilities (n, P)) of a condition's log."""
    rows = [r for r in read_jsonl(folder / LOG) if "lp" in r]
    return np.array([r["u"] for r in rows]), np.array([r["lp"] for r in rows], dtype=float)
