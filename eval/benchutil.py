"""Helpers shared by the benchmark scripts: machine peak, child-process time/memory, medians, output files.

Numbers are written to eval/results/*.json and *.md; the comparisons that matter are ratios measured side by
side in one run (see ../shared/BENCHMARKING.md).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rag.device import matmul_gflops_of

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Median fp32 GFLOP/s of a large numpy matmul: this machine's practical compute ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return matmul_gflops_of(a, b, repeats, warmup=1)  # one warm-up call (thread pool, caches)


def run_child(code: str, env: dict | None = None) -> dict:
    """Run python `code` in a fresh process; it must print one JSON object as its last line.

    Returns that object plus the wall seconds; the child reports its own peak RSS (CHILD_PRELUDE's _done),
    so every measurement starts from a fresh process and earlier steps do not inflate it.
    """
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.setdefault("wall_s", wall)
    return result


# the peak RSS of this process's own memory: /proc's VmHWM (ru_maxrss keeps the forking parent's resident size as a
# floor across exec on Linux, so a child of a large benchmark process would report the parent's peak)
CHILD_PRELUDE = """
import json, resource, time, os
def _status_mb(field):  # a VmXXX line of /proc/self/status in MB, None where there is none
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
def _peak_rss_mb():
    peak = _status_mb('VmHWM')
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def _done(**kw):
    kw['peak_rss_mb'] = _peak_rss_mb()
    print(json.dumps(kw))
"""


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_1_5_15": os.getloadavg(),  # other jobs on the machine while measuring
    }


def write_results(name: str, data: dict, markdown: str, folder: Path = RESULTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (folder / f"{name}.md").write_text(markdown)


def md_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
