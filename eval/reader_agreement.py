"""Same answers? The torch reader (in the precision `auto` picks for it here) and the ct2 reader (int8) against today's default,
llama.cpp on the Q4_K_M GGUF, on samples of the NQ-open and TriviaQA presets' questions (issue 21, req. 3).

For each set: a seeded random sample of questions from the preset's QA file, closed-book prompts (3 built-in
demonstrations, the model's default format) for all of them, and for the first `--rag` of them a retrieval
prompt with the top-3 BM25 passages from an index over the 2021 Wikipedia extract in ../shared/data (the
presets' full two-extract indexes are not built on this machine; the prompts have the eval's shape and
real, mostly relevant-looking passages). Reported per set and prompt kind:

    agreement      share of questions where the two backends' answers are identical strings
    EM             exact match (official normalization) of each backend
    EM difference  torch - llama.cpp, paired over the same questions, with a 95% paired bootstrap interval
                   (10,000 resamples of questions) and the discordant pairs (McNemar's b / c)

Writes eval/results/reader-agreement.json and .md.

    PYTHONPATH=. .venv/bin/python eval/reader_agreement.py --n 100 --rag 40
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SETS = {"nq-open": "configs/nq-open.yaml", "triviaqa": "configs/triviaqa.yaml"}
OUT = bu.RESULTS / "reader-agreement"
INDEX = REPO / "indexes" / "agreement-wiki2021"


def preset_questions(config: str, n: int, seed: int):
    import yaml

    from rag.qa import load_questions

    cfg = yaml.safe_load((REPO / config).read_text())
    qs = load_questions(REPO / cfg["qa"]["path"])
    return random.Random(seed).sample(qs, n)


def bm25_index():
    """A BM25 index over the 2021 Wikipedia extract (built once into indexes/, ~1-2 minutes)."""
    import subprocess

    passages, bm25 = INDEX / "passages", INDEX / "bm25"
    cli = [sys.executable, str(REPO / "cli.py")]
    if not (passages / "manifest.json").exists():
        subprocess.run(cli + ["corpus", "build", str(SHARED / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz"), "--out", str(passages)], check=True)
    if not (bm25 / "manifest.json").exists():
        subprocess.run(cli + ["index", "build", "--passages", str(passages), "--kind", "bm25", "--out", str(bm25)], check=True)
    from rag.retrievers import load_index

    return load_index(bm25)


def paired(a: list[float], b: list[float], seed: int = 0, resamples: int = 10_000) -> dict:
    """Mean of b - a with a 95% paired bootstrap interval, and the discordant pair counts."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(resamples, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)],
            "only_ref_right": int(((a == 1) & (b == 0)).sum()), "only_new_right": int(((a == 0) & (b == 1)).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=100, help="closed-book questions per set")
    ap.add_argument("--rag", type=int, default=40, help="of them, how many also get a k=3 BM25 prompt (0: none)")
    ap.add_argument("--precisions", default="auto", help="torch precisions (auto: what `auto` picks for torch here)")
    ap.add_argument("--ct2", default="int8", help="ct2 precisions, comma-separated ('' for none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from rag.metrics import exact_match
    from rag.readers import answer, load_reader
    from rag.readers.auto import choose_precision

    auto_prec = choose_precision("cpu")
    precisions = list(dict.fromkeys(auto_prec if p == "auto" else p for p in args.precisions.split(",")))
    retriever = bm25_index() if args.rag else None
    readers = {"llama.cpp Q4_K_M": load_reader(args.model, backend="llama-cpp")}
    for p in precisions:
        readers[f"torch {p}"] = load_reader(args.model, backend="torch", precision=p, device="cpu")
    for p in filter(None, args.ct2.split(",")):
        readers[f"ct2 {p}"] = load_reader(args.model, backend="ct2", precision=p, device="cpu")
    ref_name = "llama.cpp Q4_K_M"
    result = {"model": args.model, "n": args.n, "rag": args.rag, "seed": args.seed, "auto_precision": auto_prec,
              "env": bu.machine(), "sets": {}}
    load = [os.getloadavg()[0]]
    for set_name, config in SETS.items():
        qs = preset_questions(config, args.n, args.seed)
        kinds = {"closed-book": (qs, None)}
        if retriever is not None:
            rq = qs[: args.rag]
            hits = retriever.search_batch([q.question for q in rq], 3)
            kinds["bm25 k=3"] = (rq, [retriever.passages(hs) for hs in hits])
        for kind, (kq, ctx) in kinds.items():
            preds, secs = {}, {}
            for name, r in readers.items():
                t = time.perf_counter()
                preds[name] = [p.answer for p in answer(r, kq, ctx, batch_size=16)]
                secs[name] = round(time.perf_counter() - t, 1)
                load.append(os.getloadavg()[0])
                print(set_name, kind, name, secs[name], "s", flush=True)
            em = {name: [exact_match(a, q.answers) for a, q in zip(ans, kq)] for name, ans in preds.items()}
            rows = []
            for name in readers:
                row = {"reader": name, "EM": round(float(np.mean(em[name])), 3), "seconds": secs[name]}
                if name != ref_name:
                    row["agreement"] = round(float(np.mean([x == y for x, y in zip(preds[name], preds[ref_name])])), 3)
                    row.update({f"EM_diff_{k}": v for k, v in paired(em[ref_name], em[name]).items()})
                rows.append(row)
            result["sets"].setdefault(set_name, {})[kind] = {
                "questions": len(kq), "rows": rows,
                "examples_disagreeing": [
                    {"question": q.question, **{n: preds[n][i] for n in readers}}
                    for i, q in enumerate(kq) if len({preds[n][i] for n in readers}) > 1
                ][:8],
            }
    result["load_average_during"] = [round(x, 2) for x in load]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    OUT.with_suffix(".md").write_text(render(result))
    print(render(result))


def render(res: dict) -> str:
    lines = [f"# Reader agreement: torch and ct2 backends vs llama.cpp Q4_K_M ({res['model']})", "",
             f"{res['env']['when']}, {res['env']['cpu_count']} CPUs, load average during {res['load_average_during'][0]}-"
             f"{max(res['load_average_during'])}. Written by eval/reader_agreement.py. Seeded random sample (seed {res['seed']}) of "
             f"{res['n']} questions per preset's QA file; closed-book prompts for all, a k=3 BM25 retrieval prompt for the first "
             f"{res['rag']} (BM25 over the 2021 Wikipedia extract only: the presets' full indexes are not built here). Same weights "
             f"for all backends: the Q4_K_M GGUF, run by llama.cpp's kernels, dequantized for torch, dequantized then re-quantized to int8 (per channel) for ct2. `auto` picks "
             f"**{res['auto_precision']}** for torch on this machine. EM difference = backend - llama.cpp, paired, 95% bootstrap "
             f"interval; b / c = questions only llama.cpp / only the other backend answered right.", ""]
    for set_name, kinds in res["sets"].items():
        for kind, s in kinds.items():
            lines += [f"## {set_name}, {kind} ({s['questions']} questions)", "",
                      "| reader | EM | agreement with llama.cpp | EM diff | 95% CI | b / c | seconds |", "|---|---|---|---|---|---|---|"]
            for r in s["rows"]:
                if "agreement" in r:
                    ci = f"[{r['EM_diff_ci95'][0]:+.3f}, {r['EM_diff_ci95'][1]:+.3f}]"
                    lines.append(f"| {r['reader']} | {r['EM']:.3f} | {r['agreement']:.3f} | {r['EM_diff_diff']:+.3f} | {ci} | "
                                 f"{r['EM_diff_only_ref_right']} / {r['EM_diff_only_new_right']} | {r['seconds']} |")
                else:
                    lines.append(f"| {r['reader']} | {r['EM']:.3f} | (reference) | | | | {r['seconds']} |")
            if s["examples_disagreeing"]:
                lines += ["", "Some disagreements: " + "; ".join(
                    " / ".join(f"{k}: {v!r}" for k, v in e.items()) for e in s["examples_disagreeing"][:4])]
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
