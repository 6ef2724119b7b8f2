"""Fast reader benchmark (issue 21): prefill against this machine's matmul peaks, engines side by side,
seconds per question against the llama.cpp default, peak memory, and the dense encoder in fp32 vs bf16.

Sections (each merges its numbers into eval/results/reader-fast.json and re-renders reader-fast.md):

    peaks+prefill  torch 4096^2 matmul fp32 / bf16 (all cores, after warm-up) and one fresh ~450-token prompt
                   (real Wikipedia passages, no cached prefix) through every engine, interleaved: each repeat
                   runs every engine once, medians over repeats; the matmuls are engines of the same loop, so
                   each fraction of peak is a ratio measured side by side. Engines: llama.cpp Q4_K_M (today's
                   default), plain transformers forward (all logits), the torch reader's prefill (last-position
                   logits) in fp32 and bf16, and for the 0.5B model OpenVINO (fp32 / bf16 inference precision)
                   and CTranslate2 (int8 / fp32; this CPU offers no bf16 in CT2).
    per-question   closed-book + two retrieval prompts (k = 3 real ~100-word passages each, 3 built-in
                   demonstrations) per NQ-open question, `answer()` with batch_size 16 as the eval runs it;
                   llama.cpp and the torch reader alternate (ABBA order), medians of the repeats.
    auto           what `backend: auto` picks per model (rag.readers.auto; times llama.cpp and its estimated winner
                   once on an evaluation's prompts, cached), stored with the per-question numbers
    memory         peak RSS (VmHWM) of a fresh process that loads the reader and answers 2 questions (3 prompts each),
                   and its RSS at the end.
    encoder        all-MiniLM-L6-v2 passages/s in fp32 and bf16 (interleaved blocks), min cosine to fp32,
                   useful GFLOP/s as a share of the bf16 (and fp32) matmul peak measured in the same run.

FLOPs: 2 x non-embedding parameters x tokens (the token embedding is a lookup; the output layer runs for
the last position only). The load average is recorded with every section: the machine is shared.

    PYTHONPATH=. .venv/bin/python eval/bench_reader_fast.py --sections prefill --models qwen2.5-coder-0.5b
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402
from bench_readers import real_passages  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = bu.RESULTS / "reader-fast.json"
OUT_MD = bu.RESULTS / "reader-fast.md"
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def load_results() -> dict:
    return json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {}


def merge(into: dict, part: dict) -> dict:
    """Sections of `part` replace those of `into`; in the sections keyed by model, the fields given per model."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict) and key in ("prefill", "per_question"):
            for model, fields in value.items():
                into[key].setdefault(model, {}).update(fields)
        else:
            into[key] = value
    return into


def save(results: dict) -> None:
    """Merge this run's sections into the results file (runs of other sections may write it meanwhile)."""
    import fcntl

    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    with open(Path(tempfile.gettempdir()) / f"{OUT_JSON.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = merge(load_results(), results)
        tmp = OUT_JSON.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(merged, indent=1, default=str) + "\n")
        os.replace(tmp, OUT_JSON)
        OUT_MD.write_text(render(merged))


def env() -> dict:
    import torch

    from rag.device import cpu_info

    info = cpu_info()
    return {**bu.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": info["model"],
            "bf16_flags": [f for f in ("amx_bf16", "avx512_bf16") if f in info["flags"]],
            "torch_capability": torch.backends.cpu.get_cpu_capability()}


# ---- engines for the prefill section: name -> callable(ids: list[int]) running one fresh prefill


def matmul_engine(dtype: str, n: int = 4096):
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)

    def run(_ids):
        a @ b

    return run, 2 * n**3


def non_embedding_params(model) -> int:
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return int(sum(p.numel() for p in model.parameters() if id(p) not in skip))


def prefill_engines(model_name: str, with_others: bool, with_ct2: bool = True) -> tuple[dict, dict]:
    """name -> run(ids); and facts (non-embedding params, conversion times, errors)."""
    import torch

    from rag.readers import load_reader

    engines, facts = {}, {"errors": {}}
    llama = load_reader(model_name, backend="llama-cpp")

    def run_llama(ids):
        llama.llm.reset()
        llama.llm.eval(ids)

    engines["llama.cpp Q4_K_M"] = run_llama
    for prec in ("fp32", "bf16"):
        reader = load_reader(model_name, backend="torch", precision=prec, device="cpu")
        facts["non_embedding_params"] = non_embedding_params(reader.model)

        def run_plain(ids, m=reader.model):
            with torch.inference_mode():
                m(input_ids=torch.tensor([ids]), use_cache=False)  # what a plain transformers call computes

        def run_reader(ids, r=reader):
            with torch.inference_mode():
                r.prefix_cache.clear()
                r._prefill([ids], keep=1)

        engines[f"transformers {prec} (plain forward)"] = run_plain
        engines[f"torch reader {prec}"] = run_reader
    others = ([("openvino", openvino_engines)] if with_others else []) + ([("ctranslate2", ct2_engines)] if with_ct2 else [])
    if others:
        for name, build in others:
            try:
                t = time.perf_counter()
                engines.update(build(model_name))
                facts[f"{name}_setup_s"] = round(time.perf_counter() - t, 1)
            except Exception as e:  # the comparison records why an engine could not run
                facts["errors"][name] = f"{type(e).__name__}: {e}"[:500]
    return engines, facts


def hf_folder(model_name: str) -> str:
    from rag.readers.models import model_path
    from rag.readers.transformers import dequantized_dir

    return str(dequantized_dir(model_path(model_name)))


def openvino_engines(model_name: str) -> dict:
    """OpenVINO: the HF model traced once (input ids, mask, positions -> last logits), cached as IR."""
    import numpy as np
    import openvino as ov
    import torch
    import transformers

    from rag.readers.models import cache_dir

    ir = cache_dir() / "openvino" / f"{Path(hf_folder(model_name)).name}.xml"
    core = ov.Core()
    if not ir.exists():
        model = transformers.AutoModelForCausalLM.from_pretrained(hf_folder(model_name), dtype=torch.float32).eval()

        class LastLogits(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, position_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False, logits_to_keep=1).logits

        ex = torch.randint(100, 1000, (1, 64))
        with torch.no_grad():
            ovm = ov.convert_model(LastLogits(model), example_input=(ex, torch.ones_like(ex), torch.arange(64)[None]))
        ir.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ovm, str(ir), compress_to_fp16=False)
        del model
    ovm = core.read_model(str(ir))
    out = {}
    for prec in ("f32", "bf16"):
        cm = core.compile_model(ovm, "CPU", {"INFERENCE_PRECISION_HINT": prec, "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        req = cm.create_infer_request()

        def run(ids, req=req):
            x = np.array([ids], dtype=np.int64)
            req.infer({0: x, 1: np.ones_like(x), 2: np.arange(len(ids), dtype=np.int64)[None]})

        out[f"openvino {'fp32' if prec == 'f32' else prec}"] = run
    return out


def ct2_engines(model_name: str) -> dict:
    """CTranslate2: the HF folder converted once (int8 weights; fp32 compute type dequantizes them)."""
    import ctranslate2
    import torch
    import transformers

    from rag.readers.ct2 import convert

    folder = convert(hf_folder(model_name), "int8")
    tok = transformers.AutoTokenizer.from_pretrained(hf_folder(model_name))
    types = ctranslate2.get_supported_compute_types("cpu")
    out = {}
    for ct in ("int8", "float32", "bfloat16"):
        if ct not in types:
            continue
        g = ctranslate2.Generator(str(folder), device="cpu", compute_type=ct, intra_threads=torch.get_num_threads())

        def run(ids, g=g):
            g.generate_batch([tok.convert_ids_to_tokens(ids)], max_length=1, include_prompt_in_result=False)

        out[f"ctranslate2 {ct}"] = run
    return out


def prefill_prompt(model_name: str, n_tokens: int = 450) -> list[int]:
    """The first n tokens of a real retrieval prompt (3 demonstrations with passages, 3 Wikipedia passages)."""
    import transformers

    from rag.readers.prompts import BUILTIN_DEMOS, FORMATS

    ps = real_passages(8)
    text = FORMATS.get("kandpal").render(BUILTIN_DEMOS[:3], "who wrote the novel", ps[:5])
    ids = transformers.AutoTokenizer.from_pretrained(hf_folder(model_name))(text)["input_ids"]
    assert len(ids) >= n_tokens, len(ids)
    return list(ids[:n_tokens])


def section_prefill(results: dict, models, repeats: int, others: bool) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    peaks = {f"matmul {d} 4096^2": matmul_engine(d) for d in ("fp32", "bf16")}
    for model_name in models:
        small = "0.5b" in model_name
        engines, facts = prefill_engines(model_name, with_others=others and small, with_ct2=True)
        ids = prefill_prompt(model_name)
        flops = 2 * facts["non_embedding_params"] * len(ids)
        all_engines = {**{k: v[0] for k, v in peaks.items()}, **engines}
        work = {**{k: v[1] for k, v in peaks.items()}, **{k: flops for k in engines}}
        for name, run in all_engines.items():  # warm-up: the first bf16 call runs at about half speed
            run(ids)
            run(ids)
        times = {k: [] for k in all_engines}
        load = [os.getloadavg()[0]]
        reps = repeats if small else max(2, repeats - 1)
        for rep in range(reps):
            order = list(all_engines) if rep % 2 == 0 else list(all_engines)[::-1]
            for name in order:
                t = time.perf_counter()
                all_engines[name](ids)
                times[name].append(time.perf_counter() - t)
            load.append(os.getloadavg()[0])
            print(f"{model_name} repeat {rep}: " + ", ".join(f"{k} {work[k] / times[k][-1] / 1e9:.0f}" for k in times), flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        gflops = {k: work[k] / med[k] / 1e9 for k in med}
        peak = {d: gflops[f"matmul {d} 4096^2"] for d in ("fp32", "bf16")}
        best = max(peak.values())
        rows = []
        for k in engines:
            rows.append({"engine": k, "tokens_per_s": round(len(ids) / med[k], 1), "gflops": round(gflops[k], 1),
                         "frac_of_best_peak": round(gflops[k] / best, 3),
                         "frac_of_fp32_peak": round(gflops[k] / peak["fp32"], 3),
                         "speedup_vs_llama_cpp": round(med["llama.cpp Q4_K_M"] / med[k], 2),
                         "times_s": [round(x, 3) for x in times[k]]})
        results.setdefault("prefill", {})[model_name] = {
            "env": env(), "prompt_tokens": len(ids), "non_embedding_params": facts["non_embedding_params"],
            "peaks_gflops": {k: round(v, 1) for k, v in peak.items()}, "repeats": reps,
            "load_average_during": [round(x, 2) for x in load], "rows": rows,
            "errors": facts["errors"], **{k: v for k, v in facts.items() if k.endswith("_setup_s")},
        }
        save(results)
        del engines, all_engines
        gc.collect()


# ---- seconds per question


def question_set(n: int):
    from rag.qa import load_questions

    qs = load_questions(REPO.parent / "shared" / "data" / "qa" / "nq-open.test.jsonl", limit=n + 1)
    ps = real_passages(6 * (n + 1))
    # two "retrievers": disjoint real passages, k = 3 each (prompt lengths as in the eval; relevance not needed)
    a = [ps[6 * i : 6 * i + 3] for i in range(n + 1)]
    b = [ps[6 * i + 3 : 6 * i + 6] for i in range(n + 1)]
    return qs, a, b


def three_prompts(reader, qs, a, b):
    from rag.readers import answer

    out = []
    for ctx in (None, a, b):
        out.extend(p.answer for p in answer(reader, qs, ctx, batch_size=16))
    return out


def section_per_question(results: dict, models, n05: int, n15: int, repeats: int) -> None:
    from rag.readers import load_reader
    from rag.readers.auto import choose_backend

    for model_name in models:
        n = n05 if "0.5b" in model_name else n15
        qs, a, b = question_set(n)
        readers = {"llama.cpp Q4_K_M": load_reader(model_name, backend="llama-cpp")}
        for prec in ("bf16",):
            readers[f"torch {prec}"] = load_reader(model_name, backend="torch", precision=prec, device="cpu")
        readers["ct2 int8"] = load_reader(model_name, backend="ct2", precision="int8", device="cpu")
        for r in readers.values():  # warm-up: demonstrations into each engine's cache, first-call costs paid
            three_prompts(r, qs[:1], a[:1], b[:1])
        times = {k: [] for k in readers}
        answers = {}
        load = [os.getloadavg()[0]]
        for rep in range(repeats):
            order = list(readers) if rep % 2 == 0 else list(readers)[::-1]
            for name in order:
                t = time.perf_counter()
                answers[name] = three_prompts(readers[name], qs[1:], a[1:], b[1:])
                times[name].append((time.perf_counter() - t) / n)
                print(f"{model_name} {name}: {times[name][-1]:.2f} s/question", flush=True)
            load.append(os.getloadavg()[0])
        ref = answers["llama.cpp Q4_K_M"]
        med = {k: statistics.median(v) for k, v in times.items()}
        rows = [{"engine": k, "s_per_question": round(med[k], 3), "speedup_vs_llama_cpp": round(med["llama.cpp Q4_K_M"] / med[k], 2),
                 "per_repeat_s": [round(x, 3) for x in times[k]],
                 "answers_equal_to_llama_cpp": f"{sum(x == y for x, y in zip(answers[k], ref))}/{len(ref)}"} for k in readers]
        choice = choose_backend(model_name, "cpu")
        results.setdefault("per_question", {})[model_name] = {
            "env": env(), "questions": n, "prompts_per_question": 3, "repeats": repeats,
            "load_average_during": [round(x, 2) for x in load], "rows": rows, "auto_choice": choice.as_dict(),
        }
        save(results)
        for r in readers.values():
            r.close()
        del readers
        gc.collect()


def section_auto(results: dict, models) -> None:
    """What `backend: auto` picks for each model here now (timing the candidates once: rag.readers.auto), kept
    with that model's per-question numbers."""
    from rag.readers.auto import choose_backend

    for model_name in models:
        choice = choose_backend(model_name, "cpu")
        print(f"{model_name}: auto -> {choice.backend} {choice.precision}: {choice.reason}", flush=True)
        results.setdefault("per_question", {}).setdefault(model_name, {})["auto_choice"] = choice.as_dict()
        save(results)


# ---- peak memory (fresh processes)

MEMORY_CHILD = bu.CHILD_PRELUDE + """
import sys
sys.path.insert(0, {eval_dir!r})
from bench_reader_fast import question_set, three_prompts
from rag.readers import load_reader
qs, a, b = question_set(2)
t = time.perf_counter()
r = load_reader({model!r}, **{options!r})
load_s = time.perf_counter() - t
three_prompts(r, qs[:2], a[:2], b[:2])
_done(load_s=load_s, rss_at_end_mb=_status_mb('VmRSS'))
"""


def section_memory(results: dict, models) -> None:
    rows = []
    for model_name in models:
        for label, options in (("llama.cpp Q4_K_M", {"backend": "llama-cpp"}), ("torch bf16", {"backend": "torch", "precision": "bf16", "device": "cpu"}),
                               ("torch fp32", {"backend": "torch", "precision": "fp32", "device": "cpu"}),
                               ("ct2 int8", {"backend": "ct2", "precision": "int8", "device": "cpu"})):
            if label == "torch fp32" and "0.5b" not in model_name:
                continue  # 4 bytes a parameter: ~4x the bf16 footprint, not worth the time on 2 cores
            code = MEMORY_CHILD.format(eval_dir=str(Path(__file__).resolve().parent), model=model_name, options=options)
            r = bu.run_child(code, env={"PYTHONPATH": str(REPO)})
            rows.append({"model": model_name, "engine": label, "peak_rss_mb": round(r["peak_rss_mb"]),
                         "rss_at_end_mb": round(r["rss_at_end_mb"] or 0), "load_s": round(r["load_s"], 1)})
            print(rows[-1], flush=True)
    results["memory"] = {"env": env(), "rows": rows}
    save(results)


# ---- dense encoder


def section_encoder(results: dict, n: int, repeats: int) -> None:
    import numpy as np
    import torch

    from rag.encoders import get_encoder

    ps = [f"{p.title}: {p.text}" for p in real_passages(n)]
    encs = {p: get_encoder("all-MiniLM-L6-v2", device="cpu", precision=p) for p in ("fp32", "bf16")}
    model = encs["fp32"].model
    tok = model.tokenizer
    n_tokens = sum(min(len(x), model.max_seq_length) for x in tok(ps)["input_ids"])
    hf = model[0].auto_model
    emb = sum(p.numel() for p in hf.embeddings.parameters())
    non_emb = sum(p.numel() for p in hf.parameters()) - emb
    flops = 2 * non_emb * n_tokens
    mm = {d: matmul_engine(d, 2048) for d in ("fp32", "bf16")}
    vecs, times, peaks = {}, {k: [] for k in encs}, {k: [] for k in mm}
    for e in encs.values():
        e.encode_batch(ps[:64])
    load = [os.getloadavg()[0]]
    for rep in range(repeats):
        for d, (run, work) in mm.items():
            run(None)
            t = time.perf_counter()
            run(None)
            peaks[d].append(work / (time.perf_counter() - t) / 1e9)
        order = list(encs) if rep % 2 == 0 else list(encs)[::-1]
        for k in order:
            t = time.perf_counter()
            vecs[k] = encs[k].encode_batch(ps)
            times[k].append(time.perf_counter() - t)
        load.append(os.getloadavg()[0])
    cos = (vecs["fp32"] * vecs["bf16"]).sum(1)
    peak = {d: statistics.median(v) for d, v in peaks.items()}
    rows = []
    for k in encs:
        med = statistics.median(times[k])
        rows.append({"precision": k, "passages_per_s": round(n / med, 1), "gflops": round(flops / med / 1e9, 1),
                     "frac_of_bf16_peak": round(flops / med / 1e9 / peak["bf16"], 3),
                     "frac_of_fp32_peak": round(flops / med / 1e9 / peak["fp32"], 3),
                     "speedup_vs_fp32": round(statistics.median(times["fp32"]) / med, 2)})
    results["encoder"] = {"env": env(), "passages": n, "tokens": int(n_tokens), "non_embedding_params": int(non_emb),
                          "peaks_gflops_2048": {k: round(v, 1) for k, v in peak.items()}, "repeats": repeats,
                          "min_cosine_bf16_vs_fp32": float(np.min(cos)), "mean_cosine": float(np.mean(cos)),
                          "load_average_during": [round(x, 2) for x in load], "rows": rows,
                          "torch": torch.__version__}
    save(results)


# ---- report


def _table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def _auto_line(choice: dict) -> str:
    timed = choice.get("measured", {}).get("timed_seconds")
    how = f"; timed on an evaluation's prompts here, seconds: {timed}" if timed else ""
    return f"`backend: auto` here: **{choice['backend']} {choice['precision']}** ({choice['reason']}{how})."


def render(res: dict) -> str:
    lines = ["# Fast reader (issue 21): prefill vs the machine's peak, engines side by side",
             "", "Written by eval/bench_reader_fast.py. Ratios are measured in one run (engines interleaved, medians of "
             "the repeats); absolute numbers depend on the load of this shared machine, recorded per section "
             "(1-minute load average before and after each repeat; 2 cores).", ""]
    for model, s in res.get("prefill", {}).items():
        e = s["env"]
        lines += [f"## Prefill, {model}: one fresh {s['prompt_tokens']}-token prompt", "",
                  f"{e['when']}, {e['cpu']} ({', '.join(e['bf16_flags']) or 'no bf16 flags'}; torch capability {e['torch_capability']}), "
                  f"torch {e['torch']}, {e['threads']} threads; load average during: {s['load_average_during']}. "
                  f"Matmul 4096^2 peaks in the same loop: fp32 {s['peaks_gflops']['fp32']} GFLOP/s, bf16 {s['peaks_gflops']['bf16']} GFLOP/s "
                  f"(bf16/fp32 = {s['peaks_gflops']['bf16'] / s['peaks_gflops']['fp32']:.2f}). "
                  f"FLOPs = 2 x {s['non_embedding_params']:,} non-embedding parameters x tokens; {s['repeats']} repeats.", "",
                  _table(s["rows"], ["engine", "tokens_per_s", "gflops", "frac_of_best_peak", "frac_of_fp32_peak", "speedup_vs_llama_cpp"]), ""]
        if s.get("errors"):
            lines += ["Engines that could not run: " + "; ".join(f"{k}: {v}" for k, v in s["errors"].items()), ""]
    for model, s in res.get("per_question", {}).items():
        if "rows" not in s:  # an auto section without the per-question one
            lines += [f"## `backend: auto`, {model}", "", _auto_line(s["auto_choice"]), ""]
            continue
        e = s["env"]
        lines += [f"## Seconds per question, {model}: closed-book + two k=3 retrieval prompts", "",
                  f"{e['when']}; {s['questions']} NQ-open questions x {s['prompts_per_question']} prompts, `answer(batch_size=16)`, "
                  f"3 built-in demonstrations, real ~100-word Wikipedia passages; {s['repeats']} repeats (ABBA order); "
                  f"load average during: {s['load_average_during']}.", "",
                  _table(s["rows"], ["engine", "s_per_question", "speedup_vs_llama_cpp", "per_repeat_s", "answers_equal_to_llama_cpp"]), "",
                  _auto_line(s["auto_choice"]), ""]
    if "memory" in res:
        lines += ["## Peak memory (fresh process: load + 2 questions x 3 prompts)", "",
                  _table(res["memory"]["rows"], ["model", "engine", "peak_rss_mb", "rss_at_end_mb", "load_s"]), "",
                  "peak_rss_mb: the process's VmHWM, which counts the file pages of weights read through mmap (the torch "
                  "reader converts a float32 dequantized copy to bf16 while loading); rss_at_end_mb: what it holds after "
                  "answering.", ""]
    if "encoder" in res:
        s = res["encoder"]
        lines += ["## Dense encoder all-MiniLM-L6-v2: fp32 vs bf16", "",
                  f"{s['env']['when']}; {s['passages']} real passages ({s['tokens']:,} wordpieces), batch 32, length-sorted; "
                  f"matmul 2048^2 peaks in the same loop: {s['peaks_gflops_2048']}; min cosine bf16 vs fp32 "
                  f"{s['min_cosine_bf16_vs_fp32']:.5f} (mean {s['mean_cosine']:.5f}); load average during: {s['load_average_during']}.", "",
                  _table(s["rows"], ["precision", "passages_per_s", "gflops", "frac_of_bf16_peak", "frac_of_fp32_peak", "speedup_vs_fp32"]), ""]
    if "notes" in res:
        lines += ["## Notes", "", res["notes"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="prefill,per-question,auto,memory,encoder")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-other-engines", action="store_true", help="skip OpenVINO (always skipped beyond the 0.5B model)")
    ap.add_argument("--questions-05", type=int, default=12)
    ap.add_argument("--questions-15", type=int, default=6)
    ap.add_argument("--encoder-passages", type=int, default=256)
    ap.add_argument("--out", help="write reader-fast numbers to this .json (and .md) instead (e.g. for a run "
                    "beside another one); --merge folds such files into eval/results/reader-fast.json")
    ap.add_argument("--merge", nargs="*", help="merge these .json files into eval/results/reader-fast.json and stop")
    args = ap.parse_args()
    global OUT_JSON, OUT_MD
    if args.merge:
        for path in args.merge:
            save(json.loads(Path(path).read_text()))
        return
    if args.out:
        OUT_JSON, OUT_MD = Path(args.out), Path(args.out).with_suffix(".md")
    models = [m for m in args.models.split(",") if m]
    results = {}  # this run's sections only: save() merges them into the file
    sections = args.sections.split(",")
    if "prefill" in sections:
        section_prefill(results, models, args.repeats, not args.no_other_engines)
    if "per-question" in sections:
        section_per_question(results, models, args.questions_05, args.questions_15, max(2, args.repeats - 1))
    if "auto" in sections:
        section_auto(results, models)
    if "memory" in sections:
        section_memory(results, models)
    if "encoder" in sections:
        section_encoder(results, args.encoder_passages, args.repeats)
    save(results)


if __name__ == "__main__":
    main()
