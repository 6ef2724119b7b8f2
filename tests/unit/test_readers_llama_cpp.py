"""LlamaCppReader's settings (threads, GPU offload, decoding arguments) against a stand-in llama_cpp module."""
from __future__ import annotations

import sys
import types

import pytest

from rag.errors import BadInputError
from rag.readers.base import n_cores


@pytest.fixture
def fake_llama(monkeypatch, tmp_path):
    created = []

    class Params:
        use_extra_bufts = True

    class Llama:
        def __init__(self, **kw):
            self.kw = kw
            self.params = low.llama_model_default_params()  # what the real constructor would read
            self.model = object()
            self.calls = []
            created.append(self)

        def n_ctx(self):
            return self.kw["n_ctx"]

        def n_embd(self):
            return 8

        def n_vocab(self):
            return 100

        def tokenize(self, data, add_bos=True, special=False):
            return [1] * (len(data.split()) + int(add_bos))

        def create_completion(self, prompt, **kw):
            self.calls.append(kw)
            return {"choices": [{"text": " Paris\n"}], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}

        def close(self):
            pass

    low = types.ModuleType("llama_cpp.llama_cpp")
    low.llama_model_default_params = Params
    mod = types.ModuleType("llama_cpp")
    mod.Llama = Llama
    mod.llama_cpp = low
    mod.gpu = False
    mod.llama_supports_gpu_offload = lambda: mod.gpu
    mod.llama_model_n_params = lambda model: 1234
    mod.system_info = b"CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 | "
    mod.llama_print_system_info = lambda: mod.system_info
    monkeypatch.setitem(sys.modules, "llama_cpp", mod)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_cpp", low)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    return mod, created, model


def test_cpu_defaults(fake_llama):
    from rag.readers import load_reader

    mod, created, model = fake_llama
    r = load_reader(str(model), backend="llama-cpp", n_ctx=512)
    kw = created[0].kw
    assert kw["n_threads"] == kw["n_threads_batch"] == n_cores() and kw["n_gpu_layers"] == 0
    assert kw["n_ctx"] == 512 and r.n_ctx == 512 and r.device == "cpu" and r.n_params == 1234
    assert created[0].params.use_extra_bufts is False  # a build with AMX kernels: extra buffers off (they crash)
    assert mod.llama_cpp.llama_model_default_params().use_extra_bufts is True  # the patch is undone
    (g,) = r.generate_batch(["Q: capital of france\nA:"], 8)
    assert (g.text, g.prompt_tokens, g.new_tokens) == ("Paris", 7, 2)
    assert created[0].calls[0] == {"max_tokens": 8, "temperature": 0.0, "top_k": 1, "stop": ["\n"], "echo": False}
    assert r.count_tokens(["a b c"]) == [4]


def test_extra_buffers_follow_the_build(fake_llama):
    from rag.errors import BadInputError
    from rag.readers.llama_cpp import LlamaCppReader

    mod, created, model = fake_llama
    q4_0 = model.with_name("qwen-0fe90166e044-q4_0.gguf")
    q4_0.write_bytes(b"GGUF")
    mod.system_info = b"CPU : AVX2 = 1 | AVX512 = 1 | REPACK = 1 | "  # built without AMX (scripts/install.sh)
    assert LlamaCppReader(q4_0).extra_buffers is True and created[-1].params.use_extra_bufts is True
    assert LlamaCppReader(model).extra_buffers is False  # not a type whose repacking pays off
    mod.system_info = b"CPU : AVX2 = 1 | "  # no repacking compiled in
    assert LlamaCppReader(q4_0).extra_buffers is False
    mod.system_info = b"CPU : AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 | "
    assert LlamaCppReader(model, extra_buffers=True).extra_buffers is True  # an explicit choice is kept
    with pytest.raises(BadInputError, match="extra_buffers"):
        LlamaCppReader(model, extra_buffers="sometimes")


def test_gpu_offload_when_present(fake_llama):
    from rag.readers.llama_cpp import LlamaCppReader

    mod, created, model = fake_llama
    mod.gpu = True
    r = LlamaCppReader(model, n_threads=3)
    assert created[0].kw["n_gpu_layers"] == -1 and r.device == "cuda" and created[0].kw["n_threads"] == 3
    LlamaCppReader(model, device="cpu")
    assert created[1].kw["n_gpu_layers"] == 0


def test_cuda_requested_without_support(fake_llama):
    from rag.readers.llama_cpp import LlamaCppReader

    _, _, model = fake_llama
    with pytest.raises(BadInputError, match="no GPU support"):
        LlamaCppReader(model, device="cuda")
    with pytest.raises(BadInputError, match="device must be auto, cpu or cuda"):
        LlamaCppReader(model, device="tpu")
