"""Answer quality of a re-quantized reader against the GGUF as shipped (issue 3: the Q4_0 speed option).

The same NQ-open questions through both weight files, llama.cpp, greedy, the model's default prompt format and
3 built-in demonstrations: closed-book on the first N test questions, and retrieval-augmented with BM25 top-k
passages over both Wikipedia extracts on the next M. Reports EM / contains-answer with 95% bootstrap CIs, the
paired difference, and the share of identical answers. Writes eval/results/quant_quality.json and .md.

    .venv/bin/python eval/bench_quant_quality.py --model qwen2.5-coder-0.5b --quant q4_0 \
        --bm25 indexes/bench/bm25-bm25s-777412 --closed 300 --rag 100 --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def main() -> None:
    from rag.evaluation.stats import bootstrap_diff, bootstrap_mean
    from rag.metrics import score_answer
    from rag.qa import load_questions
    from rag.readers import answer
    from rag.readers.llama_cpp import LlamaCppReader
    from rag.retrievers import load_index

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--quant", default="q4_0")
    ap.add_argument("--bm25", type=Path, default=REPO / "indexes" / "bench" / "bm25-bm25s-777412")
    ap.add_argument("--closed", type=int, default=300)
    ap.add_argument("--rag", type=int, default=100)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    qs = load_questions(SHARED / "qa" / "nq-open.test.jsonl")
    closed_q, rag_q = qs[: args.closed], qs[args.closed: args.closed + args.rag]
    bm25 = load_index(args.bm25)
    ctx = [bm25.passages(h) for h in bm25.search_batch([q.question for q in rag_q], args.k)]
    del bm25
    out = {}
    for weights in ("as shipped", args.quant):
        r = LlamaCppReader.load(args.model, n_threads=args.threads, **({"quant": args.quant} if weights != "as shipped" else {}))
        res = {}
        for setting, q, c in (("closed-book", closed_q, None), (f"BM25 top-{args.k}", rag_q, ctx)):
            t = time.perf_counter()
            preds = answer(r, q, c)
            sc = [score_answer(p.answer, x.answers) for p, x in zip(preds, q)]
            res[setting] = {"n": len(q), "em": [s.em for s in sc], "contains": [s.contains for s in sc],
                            "answers": [p.answer for p in preds], "seconds": time.perf_counter() - t}
            print(weights, setting, statistics.mean(res[setting]["em"]), flush=True)
        out[weights] = res
        r.close()
    rows = []
    for setting in out["as shipped"]:
        a, b = out["as shipped"][setting], out[args.quant][setting]
        row = {"setting": setting, "n": a["n"]}
        for m in ("em", "contains"):
            for label, x in (("shipped", a), (args.quant, b)):
                row[f"{m}_{label}"] = bootstrap_mean(x[m]).fmt()
            d = bootstrap_diff(b[m], a[m])
            row[f"{m}_diff"] = f"{100 * d.mean:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]"
        row["identical_answers"] = statistics.mean(x == y for x, y in zip(a["answers"], b["answers"]))
        rows.append(row)
    data = {"machine": bu.machine(), "model": args.model, "quant": args.quant, "rows": rows, "raw": out}
    md = (f"# {args.model}: weights as shipped vs re-quantized to {args.quant}\n\n"
          f"{bu.machine()['when']}. NQ-open test questions, llama.cpp greedy, 3 built-in demonstrations, the model's "
          f"default prompt format; closed-book on questions 1-{args.closed}, BM25 top-{args.k} over both Wikipedia "
          f"extracts on the next {args.rag}. % [95% bootstrap CI]; diff = {args.quant} - shipped, paired.\n\n"
          + bu.md_table(rows, list(rows[0])) + "\n")
    bu.write_results("quant_quality", data, md)
    print(md)


if __name__ == "__main__":
    main()
