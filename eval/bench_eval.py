"""Evaluation benchmark (issue 5, requirement 9): wall time and peak memory of a preset run, by stage.

Runs `rag eval run` on a preset in a fresh child process (so its peak memory is the run's own), then copies
the run's stage breakdown (timing.json: load, retrieval, prompting, generation, scoring, writing, report),
the whole-process wall time and peak RSS, and the reader's prefill throughput next to this machine's fp32
matmul peak (measured in the same run) to eval/results/eval-timing-<name>.json and .md.

    .venv/bin/python eval/bench_eval.py --config configs/nq-open.yaml --per-bucket 5 --out runs/bench-nq-open
    .venv/bin/python eval/bench_eval.py --config configs/smoke-nq-open-wiki2021.yaml --overwrite

Run it from the repository root: like `rag eval run`, it reads relative paths (the preset's, --out) from the
current folder; --results sends the results files elsewhere.
Extra arguments after `--` go to `rag eval run` unchanged (e.g. -- --retriever bm25 --set reader.device=cuda).
A resumed run reports only the last session's stages in "session" (and every session's sum in "total").
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--per-bucket", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--reader", default=None)
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: runs/bench-<config name>)")
    ap.add_argument("--overwrite", action="store_true", help="start the run afresh (default: resume it)")
    ap.add_argument("--name", default=None, help="results file name (default: eval-timing-<config name>)")
    ap.add_argument("--results", type=Path, default=bu.RESULTS, help="folder for the results files (default: eval/results)")
    ap.add_argument("rest", nargs="*", help="further `rag eval run` arguments, after --")
    args = ap.parse_args(argv)

    # relative paths (the config's, --out) are relative to where this runs, as for `rag eval run` (the repo root)
    out = args.out or Path("runs") / f"bench-{args.config.stem}"
    cmd = [sys.executable, "-c", "from rag.cli import main; main()", "eval", "run", "--config", str(args.config), "--out", str(out), "--no-progress"]
    for flag, value in (("--per-bucket", args.per_bucket), ("--limit", args.limit), ("--reader", args.reader)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.overwrite:
        cmd.append("--overwrite")
    cmd += args.rest

    peak_gflops = bu.matmul_peak_gflops()
    bf16_gflops = _bf16_peak()
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"rag eval run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    timing = json.loads((out / "timing.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    session = timing["sessions"][-1]
    n_params = manifest.get("reader_info", {}).get("n_params") or 0
    prompt_tokens = _prompt_tokens(out / "records.jsonl")
    gen = session["stages"].get("generation", {})
    # upper bound on the reader's work: every prompt token prefilled (the local readers reuse the shared demo prefix)
    gflop = 2 * n_params * prompt_tokens / 1e9
    data = {
        "config": str(args.config),
        "command": " ".join(cmd[3:]),
        "run": str(out),
        "machine": bu.machine(),
        "matmul_peak_gflops": round(peak_gflops, 1),
        "matmul_bf16_peak_gflops": round(bf16_gflops, 1) if bf16_gflops else None,
        "process": {"wall_s": round(wall, 2), "peak_rss_mb": round(child_rss_mb, 1)},
        "session": session,
        "total": timing["total"],
        "reader": manifest.get("reader", {}),
        "n_selected": manifest.get("n_selected"),
        "prompt_tokens": prompt_tokens,
        "reader_gflops_upper_bound": round(gflop / gen["seconds"], 1) if gen.get("seconds") else None,
    }
    name = args.name or f"eval-timing-{args.config.stem}"
    bu.write_results(name, data, _markdown(data), args.results)
    print((args.results / f"{name}.md").read_text())


def _bf16_peak() -> float | None:
    """torch's bf16 matmul GFLOP/s where the CPU has bf16 units (the torch reader's precision there), else None."""
    from rag.device import cpu_info, has_bf16_units, matmul_gflops

    return matmul_gflops("bf16") if has_bf16_units(cpu_info()["flags"]) else None


def _prompt_tokens(path: Path) -> int:
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                n += json.loads(line).get("prompt_tokens", 0)
    return n


def _markdown(d: dict) -> str:
    s = d["session"]
    wall = s["wall_s"] or 1.0
    rows = [
        {"stage": k, "seconds": v["seconds"], "share": f"{100 * v['seconds'] / wall:.1f}%", "calls": v["calls"],
         "items": v["items"], "peak RSS after (MB)": v["peak_rss_mb"]}
        for k, v in s["stages"].items()
    ]
    return (
        f"# Evaluation run timing: `{d['config']}`\n\n"
        f"`rag {d['command']}` — {d['n_selected']} questions, reader {d['reader'].get('model')} "
        f"({d['reader'].get('backend')}), {d['machine']['cpu_count']} CPUs, {d['machine']['when']}.\n\n"
        f"Whole process: {d['process']['wall_s']:.1f} s wall, peak RSS {d['process']['peak_rss_mb']:.0f} MB. "
        f"In-process session: {s['wall_s']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB.\n\n"
        + bu.md_table(rows, ["stage", "seconds", "share", "calls", "items", "peak RSS after (MB)"])
        + f"\nPrompt tokens: {d['prompt_tokens']:,}; reader throughput at most {d['reader_gflops_upper_bound']} GFLOP/s "
        f"(2 x parameters x prompt tokens / generation seconds; the local readers reuse the shared demonstration "
        f"prefix, so the true figure is lower) against matmul peaks of {d['matmul_peak_gflops']} GFLOP/s fp32"
        + (f" and {d['matmul_bf16_peak_gflops']} GFLOP/s bf16" if d.get("matmul_bf16_peak_gflops") else "")
        + " measured in the same run.\n"
    )


if __name__ == "__main__":
    main()
