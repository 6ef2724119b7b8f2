"""The vllm reader backend without vLLM or a GPU: option checks, the error naming the extra, and its use of
vLLM's API through a fake `vllm` module (one generate call per batch, greedy newline-stopped sampling, prompt
logprobs for scoring); Ray placement of its actors on GPUs against a faked cluster. On a GPU:
tests/integration/test_reader_vllm.py."""
from __future__ import annotations

import sys
import types

import pytest

from rag.errors import BadInputError, MissingDependencyError, RagError
from rag.readers import load_reader
from rag.readers import vllm as vllm_reader
from rag.readers.base import Score
from rag.readers.fake import FakeReader


class FakeTokenizer:
    """Word-level ids (a BOS of 1 first); the vocabulary grows as words are seen."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def _id(self, w: str) -> int:
        return self.vocab.setdefault(w, len(self.vocab) + 2)

    def encode(self, text: str) -> list[int]:
        import re

        return [1] + [self._id(w) for w in re.findall(r"\s*\S+", text)]

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv.get(i, "") for i in ids)


class FakeLLM:
    instances: list["FakeLLM"] = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs = model, kwargs
        self.tok = FakeTokenizer()
        self.calls: list[tuple[list, object]] = []
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=kwargs.get("max_model_len", 4096)))
        self.reader = FakeReader(known={"who wrote hamlet": "William Shakespeare"})
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.tok

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((list(prompts), params))
        outs = []
        for p in prompts:
            if isinstance(p, dict):  # token ids: prompt logprobs of each position, -id/100 for the actual token
                ids = p["prompt_token_ids"]
                logprobs = [None] + [{t: types.SimpleNamespace(logprob=-t / 100, decoded_token=None), 0: None} for t in ids[1:]]
                outs.append(types.SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=logprobs,
                                                  outputs=[types.SimpleNamespace(text="x", token_ids=[9])]))
            else:
                text = self.reader._answer(p) + "\nQ: more"
                outs.append(types.SimpleNamespace(prompt_token_ids=self.tok.encode(p), prompt_logprobs=None,
                                                  outputs=[types.SimpleNamespace(text=text, token_ids=[5, 6, 7])]))
        return outs


class SamplingParams:
    def __init__(self, **kw):
        self.kw = kw


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(vllm_reader, "cuda_available", lambda: True)
    FakeLLM.instances.clear()
    return mod


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'rag\[vllm\]'"):
        load_reader("org/model", backend="vllm")


def test_options_are_checked_before_anything_is_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BadInputError, match="runs on CUDA GPUs only"):
        load_reader("org/model", backend="vllm", device="cpu")
    with pytest.raises(BadInputError, match="unknown option.*: n_threads"):
        load_reader("org/model", backend="vllm", n_threads=4)


def test_no_gpu_is_a_clear_error(fake_vllm, monkeypatch):
    monkeypatch.setattr(vllm_reader, "cuda_available", lambda: False)
    with pytest.raises(RagError, match="needs a CUDA GPU and none is visible"):
        load_reader("org/model", backend="vllm")


def test_generate_is_one_greedy_batch_call(fake_vllm):
    r = load_reader("org/model", backend="vllm", n_ctx=1024, dtype="float32")
    llm = FakeLLM.instances[-1]
    assert llm.model == "org/model" and llm.kwargs == {"seed": 0, "dtype": "float32", "max_model_len": 1024}
    assert r.n_ctx == 1024 and r.name == "org/model"
    out = r.generate_batch(["Q: who wrote hamlet\nA:", "Q: who else\nA:"], max_new_tokens=7)
    assert [g.text for g in out] == ["William Shakespeare", "unknown"] and out[0].new_tokens == 3
    (prompts, params), = llm.calls
    assert len(prompts) == 2 and params.kw == {"temperature": 0.0, "max_tokens": 7, "stop": ["\n"]}
    assert r.count_tokens(["Q: who wrote hamlet\nA:"]) == [6]  # BOS + 5 words


def test_score_batch_uses_prompt_logprobs_after_the_common_prefix(fake_vllm):
    r = load_reader("org/model", backend="vllm")
    prompt = "Q: who wrote hamlet\nA:"
    (s,) = r.score_batch([prompt], [" William Shakespeare"])
    tok = r.tok
    ids = tok.encode(prompt + " William Shakespeare")
    assert s == Score(sum(-t / 100 for t in ids[-2:]), tuple(-t / 100 for t in ids[-2:]), (" William", " Shakespeare"))
    (prompts, params) = FakeLLM.instances[-1].calls[-1]
    assert prompts == [{"prompt_token_ids": ids}] and params.kw == {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 1}
    assert vllm_reader.common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2


def test_named_models_load_from_the_dequantized_folder(fake_vllm, monkeypatch, tmp_path):
    import rag.readers.models as models
    import rag.readers.transformers as tr

    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setattr(models, "model_path", lambda name: tmp_path / "m.gguf")
    monkeypatch.setattr(tr, "dequantized_dir", lambda gguf: tmp_path)
    monkeypatch.setattr(tr, "load_dequantized", lambda gguf: pytest.fail("already dequantized"))
    r = load_reader("smollm2-135m", backend="vllm")
    assert FakeLLM.instances[-1].model == str(tmp_path) and r.prompt_format == "instruct"
    assert FakeLLM.instances[-1].kwargs["max_model_len"] == 2048
    with pytest.raises(BadInputError, match="only with a tokenizer"):
        load_reader(str(tmp_path / "other.gguf"), backend="vllm")


def test_ray_places_vllm_reader_actors_on_whole_gpus(fake_vllm, monkeypatch, tmp_path):
    """The eval runner's Ray generator, against a faked 2-GPU cluster: one vllm actor per GPU, each asking for a
    whole one and opening its reader on cuda; on a cluster without GPUs the actor's reader refuses clearly."""
    ray = pytest.importorskip("ray")
    import rag.engine.ray_engine as ray_engine
    from rag.engine import EngineConfig
    from rag.evaluation.config import config_from_dict
    from rag.evaluation.generation import RayGenerator, ReaderActor
    from rag.evaluation.timing import StageTimer
    from rag.pipeline import Pipeline

    made = []

    class Pool:
        def __init__(self, actor_cls, kwargs, res):
            made.append((actor_cls, kwargs, res))
            self.actors = [types.SimpleNamespace(info=types.SimpleNamespace(remote=lambda: {"name": "x"}))]

    monkeypatch.setattr(ray_engine, "OrderedPool", Pool)
    monkeypatch.setattr(ray, "get", lambda x: x)
    cfg = config_from_dict({"qa": {"path": str(tmp_path / "qa.jsonl")}, "counts": str(tmp_path), "retrievers": [],
                            "reader": {"model": "org/model", "backend": "vllm"}, "engine": {"kind": "ray"}})
    for cluster, gpus, workers, device in [({"CPU": 16.0, "GPU": 2.0}, 1.0, 2, "cuda"), ({"CPU": 4.0}, 0.0, 4, "cpu")]:
        monkeypatch.setattr(ray_engine, "cluster_resources", lambda c=cluster: c)
        pipeline = Pipeline.open(cfg.reader, open_model=False)
        RayGenerator(EngineConfig(kind="ray"), cfg, None, pipeline, StageTimer())
        actor_cls, kwargs, res = made[-1]
        assert actor_cls is ReaderActor and res.workers == workers and res.num_gpus == gpus
        assert kwargs["resources"]["device"] == device
        if device == "cuda":
            assert res.ray_args() == {"num_cpus": 8.0, "num_gpus": 1.0}
            actor = ReaderActor(**kwargs)  # what each actor does on its worker
            assert isinstance(actor.pipeline.reader, vllm_reader.VllmReader)
        else:
            with pytest.raises(BadInputError, match="runs on CUDA GPUs only"):
                ReaderActor(**kwargs)
