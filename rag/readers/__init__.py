"""Readers: a local LLM answers closed-book or from passages, through one code path.

Importing this package registers the built-in backends (llama-cpp, ct2, torch, transformers, openai, vllm, fake);
heavy libraries load only when a model is opened. "tiny-lm" (rag.world) registers when READERS.get first asks for it.
"""
from rag.readers import ct2, fake, llama_cpp, openai_compat, torch_reader, transformers, vllm  # noqa: F401  (register built-in backends)
from rag.readers.auto import Choice, check_model_ref, choose_backend
from rag.readers.answer import answer
from rag.readers.base import READERS, Generation, Reader, Score, ScoringNotSupported
from rag.readers.models import DEFAULT_MODEL, NAMED_MODELS, NamedModel, is_installed, model_path
from rag.readers.prompts import BUILTIN_DEMOS, FORMATS, Demo, PromptFormat, draw_demos, fit_prompt

# the backend and precision this machine runs fastest (rag.readers.auto: torch bf16 where the CPU's matrix units
# have bf16, CTranslate2 int8 with int8 dot products only, llama.cpp otherwise; a GPU: vLLM or torch)
DEFAULT_BACKEND = "auto"
THREADED = {"llama-cpp": "n_threads", "torch": "n_threads", "ct2": "threads"}  # backend -> its thread-count option


def thread_option(backend: str, n_threads: int | None, what: str = "threads") -> dict:
    """The load option that sets a local backend's CPU threads ({} for None); `what` names the setting in the
    error for a backend that has none."""
    if n_threads is None:
        return {}
    if backend not in THREADED:
        from rag.errors import BadInputError

        raise BadInputError(f"{what} applies to the local backends ({', '.join(THREADED)}, auto), not {backend}")
    return {THREADED[backend]: n_threads}


def load_reader(model: str = DEFAULT_MODEL, backend: str = DEFAULT_BACKEND, **options) -> Reader:
    """Open `model` (a named model, a .gguf path, for torch / transformers / vllm a folder or hub id, for openai
    the server's model id) with `backend`.

    backend "auto" picks the backend and precision for this machine (rag.readers.auto.choose_backend); the
    Choice is kept on the reader as `reader.auto_choice`. An explicit `precision` option is kept.
    """
    if backend == "auto":
        check_model_ref(model)
        choice = choose_backend(model, options.get("device", "auto"))
        threads = options.pop("n_threads", None)
        opts = {**choice.load_options(), **options, **thread_option(choice.backend, threads)}
        if choice.backend not in ("torch", "ct2"):
            opts.pop("precision", None)
        reader = READERS.get(choice.backend).load(model, **opts)
        reader.auto_choice = choice
        return reader
    return READERS.get(backend).load(model, **options)


def default_format(model: str) -> str:
    """The prompt format chosen for a named model (by measurement); "kandpal" for anything else."""
    return NAMED_MODELS[model].prompt_format if model in NAMED_MODELS else "kandpal"


__all__ = [
    "BUILTIN_DEMOS", "Choice", "DEFAULT_BACKEND", "DEFAULT_MODEL", "FORMATS", "NAMED_MODELS", "READERS", "Demo", "Generation",
    "NamedModel", "PromptFormat", "Reader", "Score", "ScoringNotSupported", "answer", "choose_backend", "default_format", "draw_demos", "fit_prompt", "is_installed",
    "load_reader", "model_path",
]
