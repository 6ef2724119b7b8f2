"""Reader benchmark (issue 3): speed of each installed named model per backend, next to this machine's peak.

For every (model, backend) pair:
    prefill tok/s      one fresh ~400-token prompt of real Wikipedia text (no cached prefix), median of 3
    decode tok/s       single-token steps after a short prompt (llama.cpp), or a forced 32-token greedy
                       generation minus its prefill (transformers)
    s / closed-book    `answer()` over N NQ-open questions, 3 built-in demonstrations (the shared prefix cached)
    s / RAG-5          the same questions, each with 5 real ~100-word passages in the prompt
    prefill GFLOP/s    2 x non-embedding parameters x prompt tokens / prefill time (the embedding lookup
                       costs nothing, and the output layer runs for the last token only), and that as a
                       fraction of the fp32 numpy matmul peak measured in the same run (before and after;
                       the higher is used)

Writes eval/results/readers.json and eval/results/readers.md.

With --formats, instead: exact match / contains-answer of each installed model under each prompt format
(rag.readers.prompts.FORMATS), closed-book and with one inserted supporting passage per question, on N
NQ-open questions; this is how each named model's default format is chosen. Writes
eval/results/reader_formats.json and .md.

    .venv/bin/python eval/bench_readers.py                       # every installed named model, llama-cpp
    .venv/bin/python eval/bench_readers.py --models smollm2-135m --backends llama-cpp,transformers
    .venv/bin/python eval/bench_readers.py --formats --questions 40 --threads 1
"""
from __future__ import annotations

import argparse
import json
import lzma
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def real_passages(n: int) -> list:
    """n ~100-word passages from the first articles of the 2021 Wikipedia extract."""
    from rag.corpus.chunking import chunk_document
    from rag.types import Document

    out = []
    with lzma.open(SHARED / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.extend(p for p in chunk_document(Document(d["id"], d["title"], d["text"])) if len(p.text.split()) >= 90)
            if len(out) >= n:
                return out[:n]
    return out


def non_embedding_params(reader) -> int:
    """Parameters that every prompt token goes through: all but the token embedding and output matrices."""
    path = getattr(reader, "path", None)
    if path is not None:
        try:
            from gguf import GGUFReader

            tensors = GGUFReader(str(path)).tensors
            return int(sum(int(t.n_elements) for t in tensors if t.name not in ("token_embd.weight", "output.weight")))
        except ImportError:
            pass
        # without the gguf package: assume tied embeddings counted once
        return reader.n_params - reader.n_vocab * reader.n_embd
    model = reader.model
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return int(sum(p.numel() for p in model.parameters() if id(p) not in skip))


def prefill_decode_llama(reader, prompt_tokens: list[int], decode_steps: int = 32) -> tuple[float, float]:
    llm = reader.llm
    times = []
    for _ in range(3):
        llm.reset()  # no cached prefix: the whole prompt is computed
        t = time.perf_counter()
        llm.eval(prompt_tokens)
        times.append(time.perf_counter() - t)
    prefill = statistics.median(times)
    llm.reset()
    llm.eval(prompt_tokens[:32])
    t = time.perf_counter()
    for tok in prompt_tokens[32 : 32 + decode_steps]:
        llm.eval([tok])  # one forward step per token, as in generation (sampling itself is negligible)
    decode = decode_steps / (time.perf_counter() - t)
    llm.reset()
    return len(prompt_tokens) / prefill, decode


def prefill_decode_transformers(reader, prompt_text: str, decode_steps: int = 32) -> tuple[float, float]:
    import torch

    enc = reader.tok([prompt_text], return_tensors="pt").to(reader.device)
    enc = {k: v[:, :400] for k, v in enc.items()}  # the same ~400 tokens as the llama.cpp measurement
    n = enc["input_ids"].shape[1]
    times = []
    with torch.inference_mode():
        for _ in range(3):
            t = time.perf_counter()
            reader.model(**enc, use_cache=False, logits_to_keep=1)
            times.append(time.perf_counter() - t)
        prefill = statistics.median(times)
        short = reader.tok([prompt_text[:200]], return_tensors="pt").to(reader.device)
        t = time.perf_counter()
        reader.model.generate(**short, max_new_tokens=1, do_sample=False, pad_token_id=reader.tok.pad_token_id)
        one = time.perf_counter() - t
        t = time.perf_counter()
        reader.model.generate(**short, max_new_tokens=decode_steps + 1, min_new_tokens=decode_steps + 1, do_sample=False,
                              pad_token_id=reader.tok.pad_token_id)
        full = time.perf_counter() - t
    return n / prefill, decode_steps / max(full - one, 1e-9)


def per_question(reader, questions, passages) -> tuple[float, float, list, list]:
    from rag.readers import answer

    answer(reader, questions[:1])  # warm-up: the demonstrations' prefix enters the cache
    t = time.perf_counter()
    closed = answer(reader, questions)
    closed_s = (time.perf_counter() - t) / len(questions)
    ctx = [passages[5 * i : 5 * i + 5] for i in range(len(questions))]
    answer(reader, questions[:1], ctx[:1])
    t = time.perf_counter()
    rag = answer(reader, questions, ctx)
    rag_s = (time.perf_counter() - t) / len(questions)
    return closed_s, rag_s, closed, rag


def bench_one(name: str, backend: str, threads: int | None, questions, passages, prompt_text: str,
              quant: str | None = None) -> dict:
    from rag.readers import load_reader

    options = {"n_threads": threads} if backend == "llama-cpp" and threads else {}
    if quant:
        options["quant"] = quant
    t = time.perf_counter()
    reader = load_reader(name, backend=backend, **options)
    load_s = time.perf_counter() - t
    if backend == "llama-cpp":
        toks = reader.llm.tokenize(prompt_text.encode("utf-8"), add_bos=True)[:400]
        prefill, decode = prefill_decode_llama(reader, toks)
        n_prompt = len(toks)
    else:
        prefill, decode = prefill_decode_transformers(reader, prompt_text)
        n_prompt = min(400, reader.count_tokens([prompt_text])[0])
    closed_s, rag_s, closed, rag = per_question(reader, questions, passages)
    nonemb = non_embedding_params(reader)
    row = {
        "model": name,
        "weights": quant or "as shipped",
        "extra_buffers": {True: "on", False: "off"}.get(getattr(reader, "extra_buffers", None), "-"),
        "backend": backend,
        "threads": threads or "all",
        "load_s": load_s,
        "params": reader.n_params,
        "non_embedding_params": nonemb,
        "prefill_tokens": n_prompt,
        "prefill_tok_s": prefill,
        "decode_tok_s": decode,
        "closed_s_per_q": closed_s,
        "rag5_s_per_q": rag_s,
        "rag5_prompt_tokens": statistics.mean(p.prompt_tokens for p in rag),
        "closed_prompt_tokens": statistics.mean(p.prompt_tokens for p in closed),
        "prefill_gflops": 2 * nonemb * prefill / 1e9,
    }
    reader.close()
    return row


def supporting_passage(q):
    from rag.types import Passage

    # a neutral title: the answer can only come from the text
    return Passage(f"support-{q.qid}#0", f"support-{q.qid}", "Notes", f"{q.question[0].upper()}{q.question[1:]}? The answer is {q.answers[0]}.")


def bench_formats(names: list[str], threads: int | None, questions) -> None:
    from rag.metrics import score_answer
    from rag.readers import FORMATS, answer, load_reader

    rows = []
    for name in names:
        reader = load_reader(name, backend="llama-cpp", **({"n_threads": threads} if threads else {}))
        for fmt in sorted(FORMATS):
            for setting, ctx in (("closed-book", None), ("supporting passage", [[supporting_passage(q)] for q in questions])):
                if setting == "closed-book" and FORMATS[fmt].render([], "q", []) == FORMATS["kandpal"].render([], "q", []) and fmt != "kandpal":
                    continue  # the same closed-book prompt as kandpal
                t = time.perf_counter()
                preds = answer(reader, questions, ctx, prompt_format=fmt)
                scores = [score_answer(p.answer, q.answers) for p, q in zip(preds, questions)]
                rows.append({
                    "model": name, "format": fmt, "setting": setting,
                    "em": statistics.mean(s.em for s in scores), "contains": statistics.mean(s.contains for s in scores),
                    "f1": statistics.mean(s.f1 for s in scores), "s_per_q": (time.perf_counter() - t) / len(questions),
                })
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        reader.close()
    md = (
        "# Reader prompt formats\n\n"
        f"{bu.machine()['when']}: {len(questions)} NQ-open test questions, 3 built-in demonstrations, llama.cpp, greedy. "
        "\"supporting passage\": one inserted passage stating the question and its first gold answer (does the model "
        "read the passage?). Exact match, token F1 and contains-answer are SQuAD-normalized, best over the aliases.\n\n"
        + bu.md_table(rows, ["model", "format", "setting", "em", "f1", "contains", "s_per_q"])
    )
    bu.write_results("reader_formats", {"machine": bu.machine(), "questions": len(questions), "rows": rows}, md)
    print(md)


def main() -> None:
    from rag.qa import load_questions
    from rag.readers import NAMED_MODELS, is_installed

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="installed", help="comma-separated named models, or 'installed'")
    ap.add_argument("--backends", default="llama-cpp", help="comma-separated: llama-cpp, transformers")
    ap.add_argument("--threads", default=None,
                    help="llama.cpp threads, or a comma-separated list to compare (default: every core)")
    ap.add_argument("--questions", type=int, default=8, help="NQ-open questions per timing")
    ap.add_argument("--quants", default="",
                    help="llama.cpp weights to compare, comma-separated: '' = the GGUF as shipped, q4_0 / q8_0 = a "
                         "re-quantized cached copy (repacked GEMM kernels); e.g. ',q4_0'")
    ap.add_argument("--formats", action="store_true", help="measure answer quality per prompt format instead of speed")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of eval/results/readers.json for other (model, backend, threads) pairs")
    args = ap.parse_args()

    names = [n for n in NAMED_MODELS if is_installed(n)] if args.models == "installed" else args.models.split(",")
    names.sort(key=lambda n: NAMED_MODELS[n].params)
    questions = load_questions(SHARED / "qa" / "nq-open.test.jsonl", limit=args.questions)
    if args.formats:
        bench_formats(names, int(args.threads.split(",")[0]) if args.threads else None, questions)
        return
    passages = real_passages(5 * args.questions + 10)
    prompt_text = "\n".join(f"Passage: {p.title}: {p.text}" for p in passages[-6:])

    peak_before = bu.matmul_peak_gflops()
    rows = []
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    for name in names:
        for backend in args.backends.split(","):
            for threads in thread_counts if backend == "llama-cpp" else [None]:
                for quant in args.quants.split(",") if backend == "llama-cpp" else [""]:
                    print(f"{name} / {backend} / threads {threads or 'all'} / {quant or 'as shipped'} ...", file=sys.stderr, flush=True)
                    rows.append(bench_one(name, backend, threads, questions, passages, prompt_text, quant or None))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    peak_after = bu.matmul_peak_gflops()
    peak = max(peak_before, peak_after)
    for r in rows:
        r["prefill_frac_of_peak"] = r["prefill_gflops"] / peak
        r["matmul_peak_gflops"] = peak
    if args.merge and (bu.RESULTS / "readers.json").exists():
        key = lambda r: (r["model"], r.get("weights", "as shipped"), r["backend"], str(r["threads"]))  # noqa: E731
        new = {key(r) for r in rows}
        old = json.loads((bu.RESULTS / "readers.json").read_text())["rows"]
        rows = [r for r in old if key(r) not in new] + rows

    data = {
        "machine": bu.machine(),
        "matmul_peak_gflops": {"before": peak_before, "after": peak_after, "used": peak},  # of the latest run
        "questions": args.questions,
        "rows": rows,
    }
    cols = ["model", "weights", "extra_buffers", "backend", "threads", "prefill_tok_s", "decode_tok_s", "closed_s_per_q", "rag5_s_per_q",
            "rag5_prompt_tokens", "prefill_gflops", "matmul_peak_gflops", "prefill_frac_of_peak", "load_s"]
    md = (
        "# Reader speed\n\n"
        f"{bu.machine()['when']}, {bu.machine()['cpu_count']} CPUs. Each row's fp32 numpy matmul peak was measured in "
        f"the same run as that row (before and after the models; the higher is used); latest run: "
        f"{peak_before:.0f} GFLOP/s before, {peak_after:.0f} after.\n\n"
        "prefill: one fresh ~400-token prompt of real passages (median of 3); decode: single-token steps; "
        f"s/question over {args.questions} NQ-open questions with 3 built-in demonstrations (shared prefix cached), "
        "closed-book and with 5 real ~100-word passages; prefill GFLOP/s = 2 x non-embedding parameters x tokens / time.\n\n"
        + bu.md_table(rows, cols)
        + "\nThe machine is shared with other jobs: absolute numbers are noisy; the fraction of the peak measured in "
        "the same run is the comparable figure. extra_buffers: llama.cpp's repacked weight layouts (on for Q4_0/Q8_0 files when the build has "
        "no AMX kernels, whose buffers crash llama-cpp-python 0.3.36 on this AMX VM; scripts/install.sh builds without "
        "them). weights q4_0: the shipped Q4_K_M GGUF re-quantized once to Q4_0, which llama.cpp repacks for its GEMM "
        "kernels (answer quality: see below).\n"
    )
    bu.write_results("readers", data, md)
    print(md)


if __name__ == "__main__":
    main()
