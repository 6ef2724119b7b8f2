"""`rag ask QUESTION`: answer one question closed-book, from retrieved passages, or both."""
from __future__ import annotations

import json
from pathlib import Path

import click

from rag.errors import BadInputError
from rag.readers import DEFAULT_BACKEND, DEFAULT_MODEL, thread_option
from rag.readers.base import DEFAULT_N_CTX


def _snippet(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


@click.command()
@click.argument("question")
@click.option("--mode", type=click.Choice(["closed", "rag", "both"]), default=None,
              help="closed: from the model's own weights; rag: from the top-k passages of --index; both: "
                   "print the two answers side by side. Default: rag when --index is given, else closed.")
@click.option("--index", "index_path", type=click.Path(path_type=Path), default=None,
              help="Index folder (from `rag index build`) to retrieve passages from; needed for rag and both.")
@click.option("--retriever", default=None,
              help="The index kind you expect (bm25, dense, hybrid); an error if --index is another kind. "
                   "Default: whatever the index manifest says.")
@click.option("--passages", "passages_path", type=click.Path(path_type=Path), default=None,
              help="Passage store to read hits from. Default: the store recorded in the index manifest.")
@click.option("-k", "--k", "k", type=int, default=5, show_default=True,
              help="How many retrieved passages go into the prompt (fewer if they do not fit the context).")
@click.option("--model", default=None,
              help=f"Named model (see `rag models list`; default {DEFAULT_MODEL}), a .gguf file, with --backend "
                   "transformers or vllm a local model folder or Hugging Face id, with --backend openai the server's "
                   "model id.")
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True,
              help="Reader backend: auto (the fastest measured for this machine: rag.readers.auto), llama-cpp (GGUF), torch, ct2, transformers, openai (any OpenAI-compatible "
                   "server: see --base-url) or vllm (offline vLLM on a CUDA GPU, pip install 'rag[vllm]').")
@click.option("--base-url", default=None,
              help="[openai] The server's OpenAI API root, e.g. http://127.0.0.1:8080/v1 (llama.cpp), "
                   "http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:11434/v1 (Ollama). Default: $OPENAI_BASE_URL. "
                   "--model is the server's model id (default: the one model it serves).")
@click.option("--api-key-env", default=None, metavar="NAME",
              help="[openai] Environment variable holding the API key (default: OPENAI_API_KEY when set). The key "
                   "itself is never accepted on the command line nor written anywhere.")
@click.option("--chat", is_flag=True,
              help="[openai] Use the chat completions endpoint: the same few-shot prompt sent as chat turns, through "
                   "the server's chat template. Default: the plain completions endpoint with the exact prompt.")
@click.option("--shots", type=int, default=3, show_default=True,
              help="Number of few-shot demonstrations in the prompt (0 = none).")
@click.option("--demos", "demos_path", type=click.Path(path_type=Path), default=None,
              help="QA file to draw the demonstrations from (seeded; see --seed). In rag mode each gets the first "
                   "passage from --index that holds its answer. Default: the built-in demonstrations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing demonstrations from --demos.")
@click.option("--format", "prompt_format", default=None,
              help="Prompt format (kandpal, kandpal-best-last, passages-first, instruct). Default: the named model's setting, else kandpal.")
@click.option("--max-new-tokens", type=int, default=16, show_default=True,
              help="Most tokens the model may write; decoding is greedy and stops at the first newline.")
@click.option("--n-ctx", type=int, default=None,
              help=f"Context size prompts are fitted to (passages truncated or dropped). Default: the model's setting ({DEFAULT_N_CTX}).")
@click.option("--threads", type=int, default=None,
              help="[llama-cpp, torch, ct2, auto] CPU threads. Default: every core this process may use.")
@click.option("--device", default="auto", show_default=True,
              help="auto (a CUDA GPU when present), cpu or cuda.")
@click.option("--quant", type=click.Choice(["q4_0", "q8_0"]), default=None,
              help="[llama-cpp] Run a copy of the GGUF re-quantized to this type (made once, cached): llama.cpp "
                   "repacks Q4_0 for its GEMM kernels, ~1.4x faster prefill on CPU at some cost in accuracy "
                   "(eval/results/quant_quality.md).")
@click.option("--sentences", type=click.IntRange(min=1), default=None,
              help="Show only the N sentences of the top-k passages that best match the question (extractive "
                   "compression, rag.readers.compress). Default: whole passages.")
@click.option("--gold", "golds", multiple=True, metavar="ANSWER",
              help="A gold answer (repeatable: aliases): also score it teacher-forced after the same prompt and show "
                   "the best alias's log-probability (summed and per token) in each mode.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def ask(question, mode, index_path, retriever, passages_path, k, model, backend, base_url, api_key_env, chat, shots,
        demos_path, seed, prompt_format, max_new_tokens, n_ctx, threads, device, quant, sentences, golds, as_json) -> None:
    """Answer QUESTION with a local LLM, closed-book and/or from retrieved passages.

    Both modes use the same few-shot "Q: ... / A: ..." prompt; retrieval-augmented prompts add the
    top-k passages (title and text) before the question. For rag, the passages used are printed with
    their titles and retrieval scores.

    \b
    Examples:
      rag ask "who wrote the origin of species"
      rag ask "who wrote the origin of species" --mode both --index indexes/bm25 -k 5
      rag ask "..." --model qwen2.5-coder-0.5b --shots 4 --json
      rag ask "who wrote the origin of species" --gold "Charles Darwin" --gold Darwin --json
      rag ask "..." --backend openai --base-url http://127.0.0.1:8080/v1 --model smollm2-135m
    """
    from rag.pipeline import Pipeline, ReaderConfig, prompt_format as format_of, retrieve
    from rag.readers import READERS
    from rag.types import Question

    # every argument is checked before a model or index is opened
    if not question.strip():
        raise BadInputError("the question is empty")
    mode = mode or ("rag" if index_path else "closed")
    if mode in ("rag", "both") and index_path is None:
        raise BadInputError(f"--mode {mode} needs --index PATH (an index folder from `rag index build`)")
    if k <= 0:
        raise BadInputError(f"-k must be a positive integer, got {k}")
    if shots < 0:
        raise BadInputError(f"--shots must be >= 0, got {shots}")
    if max_new_tokens <= 0:
        raise BadInputError(f"--max-new-tokens must be positive, got {max_new_tokens}")
    if backend != "auto":  # auto: chosen for this machine when the model opens (rag.readers.auto)
        READERS.get(backend)
    served = backend == "openai"  # the model is whatever the server serves: its id, or None for its only one
    if not served and (base_url or api_key_env or chat):
        raise BadInputError("--base-url, --api-key-env and --chat apply to the openai backend only")
    options = {}
    if served:
        options.update(base_url=base_url, api_key_env=api_key_env, chat=chat)
    if backend != "auto":  # auto resolves to a local backend
        thread_option(backend, threads, what="--threads")  # refuses threads for a backend without them
    if quant is not None:
        if backend == "auto":  # a llama.cpp re-quantization was asked for: that names the backend
            backend = "llama-cpp"
        if backend != "llama-cpp":
            raise BadInputError("--quant applies to the llama-cpp backend only")
        options["quant"] = quant
    cfg = ReaderConfig(model=model or (None if served else DEFAULT_MODEL), backend=backend, prompt_format=prompt_format,
                       shots=shots, demos=demos_path, max_new_tokens=max_new_tokens, n_ctx=n_ctx, n_threads=threads,
                       device=device, sentences=sentences, options=options, score_gold=bool(golds))
    golds = tuple(g.strip() for g in golds)
    if any(not g for g in golds):
        raise BadInputError("--gold must not be empty")
    if prompt_format or not served:
        format_of(cfg)  # an unknown format fails before the model loads
    if demos_path is None and shots > 0:
        from rag.pipeline import demonstrations

        demonstrations(cfg)  # too many shots for the built-in demonstrations fails before the model loads

    index = None
    if mode != "closed":
        from rag.artifacts import read_manifest
        from rag.retrievers import load_index

        kind = read_manifest(index_path, kind="index/")["kind"].split("/", 1)[1]
        if retriever is not None and retriever != kind:
            raise BadInputError(f"--retriever {retriever} but {index_path} is a {kind} index")
        index = load_index(index_path, passages=passages_path)

    q = Question("ask-0", question.strip(), golds)
    pipe = Pipeline.open(cfg, seed=seed, exclude=[q], demo_retriever=index,
                         doc_freq=index.doc_freq() if index is not None and sentences else None, k=k)
    reader = pipe.reader
    out: dict = {"question": q.question, "model": reader.model if served else cfg.model, "backend": reader.backend,
                 "prompt_format": pipe.fmt.name, "shots": shots, "demos": [d.qid for d in pipe.demos]}
    if served:
        out["server"] = reader.url
    if getattr(reader, "auto_choice", None) is not None:
        out["backend_choice"] = {"backend": reader.auto_choice.backend, "precision": reader.auto_choice.precision,
                                 "reason": reader.auto_choice.reason}
    if mode in ("closed", "both"):
        (p,) = pipe.answer([q])
        out["closed"] = {"answer": p.answer, "prompt_tokens": p.prompt_tokens, "new_tokens": p.new_tokens, **_gold(p)}
    if index is not None:
        (got,) = retrieve(index, [q.question], k)
        hits, passages = got.hits, list(got.passages)
        (shown,) = pipe.show([q], [passages])
        shown_text = {x.pid: x.text for x in shown}
        (p,) = pipe.read([q], [shown])
        used = set(p.passages)
        out["rag"] = {
            "answer": p.answer,
            "prompt_tokens": p.prompt_tokens,
            "new_tokens": p.new_tokens,
            "index": str(index_path),
            "k": k,
            "sentences": sentences,
            "passages_dropped": p.passages_dropped,
            "passages_truncated": p.passages_truncated,
            **_gold(p),
            "passages": [
                {"pid": h.pid, "rank": h.rank, "score": h.score, "title": ps.title, "text": ps.text, "used": h.pid in used,
                 **({"shown": shown_text.get(h.pid)} if sentences else {})}
                for h, ps in zip(hits, passages)
            ],
        }
    pipe.close()

    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if "closed" in out:
        click.echo(f"closed-book:          {out['closed']['answer'] or '(empty answer)'}{_gold_text(out['closed'])}")
    if "rag" in out:
        r = out["rag"]
        click.echo(f"retrieval-augmented:  {r['answer'] or '(empty answer)'}{_gold_text(r)}")
        click.echo(f"passages ({len(r['passages'])} retrieved from {index_path}):")
        if not r["passages"]:
            click.echo("  (no passage matched the question)")
        for row in r["passages"]:
            why = "no sentence selected" if sentences and row.get("shown") is None else "did not fit"
            mark = "" if row["used"] else f"  (not shown to the model: {why})"
            click.echo(f"  {row['rank']:>2}  {row['score']:9.4f}  {row['title']}  [{row['pid']}]{mark}")
            click.echo(f"      {_snippet(row['text'])}")
            if row["used"] and sentences and row["shown"] != row["text"]:
                click.echo(f"      shown: {_snippet(row['shown'])}")
        if r["passages_truncated"]:
            click.echo("  (the last passage shown was truncated to fit the context)")


def _gold(p) -> dict:
    """The gold answer's score of a Prediction, for --json (nothing when no --gold was given)."""
    if p.gold_logprob is None:
        return {}
    return {"gold": {"answer": p.gold_answer, "logprob": p.gold_logprob, "tokens": p.gold_tokens,
                     "logprob_per_token": p.gold_logprob / p.gold_tokens}}


def _gold_text(row: dict) -> str:
    g = row.get("gold")
    return "" if g is None else f"   [gold {g['answer']!r}: log-prob {g['logprob']:.3f}, {g['logprob_per_token']:.3f} per token]"
