"""Readers: a local LLM answers closed-book or from passages, through one code path.

Importing this package registers the built-in backends (llama-cpp, ct2, torch, transformers, openai, vllm, fake);
heavy libraries load only when a model is opened. "tiny-lm" (rag.world) registers when READERS.get first asks for it.
"""
from rag.readers import ct2, fake, llama_cpp, openai_compat, torch_reader, transformers, vllm  # noqa: F401  (register built-in backends)
from rag.readers.auto import Choice, choose_backend
from rag.readers.answer import answer
from rag.readers.base import READERS, Generation, Reader, Score, ScoringNotSupported
from rag.readers.models import DEFAULT_MODEL, NAMED_MODELS, NamedModel, is_installed, model_path
from rag.readers.prompts import BUILTIN_DEMOS, FORMATS, Demo, PromptFormat, draw_demos, fit_prompt

DEFAULT_BACKEND = "llama-cpp"


def load_reader(model: str = DEFAULT_MODEL, backend: str = DEFAULT_BACKEND, **options) -> Reader:
    """Open `model` (a named model, a .gguf path, for torch / transformers / vllm a folder or hub id, for openai
    the server's model id) with `backend`.

    backend "auto" picks the backend and precision for this machine (rag.readers.auto.choose_backend); the
    Choice is kept on the reader as `reader.auto_choice`. An explicit `precision` option is kept.
    """
    if backend == "auto":
        choice = choose_backend(model, options.get("device", "auto"))
        opts = {**choice.load_options(), **options}
        if choice.backend != "torch":
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
