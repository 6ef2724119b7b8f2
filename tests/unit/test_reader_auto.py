"""`backend: auto` on simulated machines: bf16 only where the CPU has bf16 units and they measure faster,
llama.cpp where torch would not be clearly faster, torch where llama.cpp cannot run the model."""
from __future__ import annotations

import json

import pytest

from rag.errors import BadInputError
from rag.device import choose_cpu_precision, cpu_info, has_bf16_units
from rag.readers.auto import Choice, choose_backend

ALL = {"torch", "llama-cpp", "ct2"}


def profile(fp32: float, bf16: float | None, flags=("avx512_bf16",), int8=()) -> dict:
    return {"cpu": "simulated", "bf16_flags": list(flags), "int8_flags": list(int8), "matmul_gflops": {"fp32": fp32, "bf16": bf16}}


AMX = profile(281, 1538, ("amx_bf16", "avx512_bf16"), ("amx_int8", "avx512_vnni"))  # the issue's AMX machine
NO_BF16 = profile(186, None, ())  # an AVX2/FMA EPYC
EPYC = profile(190, 420, ("avx512_bf16",), ("avx512_vnni",))  # this project's EPYC: AVX512-BF16 and VNNI, no AMX
VNNI = profile(190, None, (), ("avx512_vnni",))  # e.g. Cascade Lake: VNNI, no bf16 units


def test_cpu_without_bf16_picks_fp32():
    assert choose_cpu_precision(NO_BF16)[0] == "fp32"
    # a model llama.cpp cannot open runs on torch, in fp32
    c = choose_backend("some-org/some-model", "cpu", profile=NO_BF16, available=ALL, cuda=False)
    assert (c.backend, c.precision) == ("torch", "fp32")
    assert "no bf16" in c.reason


def test_cpu_without_bf16_keeps_llama_cpp_for_gguf_models():
    # torch fp32 prefill is about llama.cpp's: not worth leaving the default
    c = choose_backend("qwen2.5-coder-0.5b", "cpu", profile=NO_BF16, available=ALL, cuda=False)
    assert (c.backend, c.precision) == ("llama-cpp", "gguf")
    c = choose_backend("/models/x.Q4_K_M.gguf", "cpu", profile=NO_BF16, available=ALL, cuda=False)
    assert c.backend == "llama-cpp"


def test_bf16_flag_but_no_measured_gain_picks_fp32():
    slow = profile(200, 210)
    assert choose_cpu_precision(slow)[0] == "fp32"
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=slow, available=ALL, cuda=False).backend == "llama-cpp"


def test_amx_machine_picks_torch_bf16():
    c = choose_backend("qwen2.5-coder-0.5b", "cpu", profile=AMX, available=ALL, cuda=False)
    assert (c.backend, c.precision) == ("torch", "bf16")
    assert c.measured["estimated_prefill_speedup_over_llama_cpp"]["torch"] > 3
    assert c.load_options() == {"precision": "bf16"}
    json.dumps(c.as_dict())  # goes into a run manifest as is


def test_avx512_bf16_epyc_picks_torch_bf16():
    c = choose_backend("qwen2.5-coder-0.5b", "cpu", profile=EPYC, available=ALL, cuda=False)
    assert (c.backend, c.precision) == ("torch", "bf16")


def test_vnni_without_bf16_picks_ct2_int8():
    c = choose_backend("qwen2.5-coder-0.5b", "cpu", profile=VNNI, available=ALL, cuda=False)
    assert (c.backend, c.precision) == ("ct2", "int8") and c.load_options() == {"precision": "int8"}
    # without ctranslate2 installed: torch fp32 is no faster than llama.cpp
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=VNNI, available={"torch", "llama-cpp"}, cuda=False).backend == "llama-cpp"


def test_missing_libraries_and_gpus():
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=AMX, available={"llama-cpp"}, cuda=False).backend == "llama-cpp"
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=NO_BF16, available={"torch"}, cuda=False).backend == "torch"
    # ct2 needs int8 dot-product units: without them, and without torch, llama.cpp stays
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=NO_BF16, available={"ct2", "llama-cpp"}, cuda=False).backend == "llama-cpp"
    with pytest.raises(BadInputError, match="no reader backend"):
        choose_backend("org/model", "cpu", profile=AMX, available={"llama-cpp"}, cuda=False)
    gpu = choose_backend("qwen2.5-coder-0.5b", "auto", profile={"cuda_precision": "bf16"}, available=ALL, cuda=True)
    assert (gpu.backend, gpu.precision) == ("torch", "bf16")
    assert choose_backend("m", "auto", profile=AMX, available=ALL | {"vllm"}, cuda=True).backend == "vllm"
    # device cpu never takes the GPU path
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=AMX, available=ALL | {"vllm"}, cuda=True).backend == "torch"
    with pytest.raises(BadInputError, match="no CUDA GPU"):
        choose_backend("m", "cuda", profile=AMX, available=ALL, cuda=False)
    assert isinstance(choose_backend("m", "cpu", profile=AMX, available=ALL, cuda=False), Choice)


def test_cpu_info_reads_flags():
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
    info = cpu_info(text)
    assert info["model"] == "Some CPU" and "avx512_bf16" in info["flags"] and has_bf16_units(info["flags"])
    assert not has_bf16_units(cpu_info("flags : fpu avx2 fma\n")["flags"])
    assert has_bf16_units(cpu_info("Features : fp asimd bf16 i8mm\n")["flags"])  # ARM


def test_profile_is_measured_once_and_cached(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import rag.device as device
    import rag.readers.auto as auto

    monkeypatch.setenv("RAG_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(device, "matmul_gflops", lambda dtype, **kw: calls.append(dtype) or {"fp32": 100.0, "bf16": 250.0}[dtype])
    monkeypatch.setattr(device, "cpu_info", lambda: {"model": "sim", "flags": ["avx512_bf16"]})
    first = device.cpu_profile()
    again = device.cpu_profile()
    assert calls == ["fp32", "bf16"] and not first["cached"] and again["cached"]
    assert again["matmul_gflops"] == {"fp32": 100.0, "bf16": 250.0}
    assert auto.choose_precision("cpu") == "bf16"
    monkeypatch.setattr(device, "cpu_info", lambda: {"model": "sim", "flags": []})  # another machine: measured anew
    assert device.cpu_profile()["matmul_gflops"]["bf16"] is None and calls == ["fp32", "bf16", "fp32"]



def test_measured_timings_decide_over_the_estimate():
    # the estimate says torch bf16 (about 2x llama.cpp's prefill); what was timed here decides
    fast = {"llama-cpp gguf": {"seconds": 10.0}, "torch bf16": {"seconds": 5.3}}
    c = choose_backend("qwen2.5-coder-1.5b", "cpu", profile=EPYC, available=ALL, cuda=False, timings=fast)
    assert (c.backend, c.precision) == ("torch", "bf16") and "measured 1.89x" in c.reason
    assert c.measured["timed_seconds"] == {"llama-cpp gguf": 10.0, "torch bf16": 5.3}
    tie = {"llama-cpp gguf": {"seconds": 10.0}, "torch bf16": {"seconds": 9.0}}
    c = choose_backend("qwen2.5-coder-1.5b", "cpu", profile=EPYC, available=ALL, cuda=False, timings=tie)
    assert c.backend == "llama-cpp" and "measured only 1.11x" in c.reason
    assert c.measured["measured_speedup_over_llama_cpp"] == pytest.approx(1.111, abs=1e-3)


def test_a_simulated_machine_times_nothing(monkeypatch):
    from rag.readers import calibration

    monkeypatch.setattr(calibration, "time_backend", lambda *a: pytest.fail("timed a model on a simulated machine"))
    monkeypatch.setattr(calibration, "model_room", lambda *a: pytest.fail("sized a model on a simulated machine"))
    assert choose_backend("qwen2.5-coder-0.5b", "cpu", profile=EPYC, available=ALL, cuda=False).backend == "torch"


def test_timings_are_measured_once_per_machine_and_model(tmp_path, monkeypatch):
    from rag.readers import calibration

    monkeypatch.setenv("RAG_CACHE", str(tmp_path))
    calls = []

    def fake_time(model, backend, precision):
        calls.append((model, backend, precision))
        return {"seconds": 4.0 if backend == "llama-cpp" else 2.0, "load_s": 0.1}

    monkeypatch.setattr(calibration, "time_backend", fake_time)
    pair = [("llama-cpp", "gguf"), ("torch", "bf16")]
    first = calibration.speed_timings("qwen2.5-coder-0.5b", pair, EPYC)
    assert first == {"llama-cpp gguf": {"seconds": 4.0, "load_s": 0.1}, "torch bf16": {"seconds": 2.0, "load_s": 0.1}}
    assert len(calls) == 2 and list((tmp_path / "machine").glob("speed-*.json"))
    assert calibration.speed_timings("qwen2.5-coder-0.5b", pair, EPYC) == first and len(calls) == 2  # cached
    calibration.speed_timings("qwen2.5-coder-1.5b", pair, EPYC)  # another model: timed
    calibration.speed_timings("qwen2.5-coder-0.5b", pair, {**EPYC, "cpu": "another"})  # another machine kind: timed
    calibration.speed_timings("qwen2.5-coder-0.5b", pair, EPYC, refresh=True)
    assert len(calls) == 8
    # a local file is keyed by its size and mtime: replaced weights are timed again
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x")
    calibration.speed_timings(str(f), pair, EPYC)
    f.write_bytes(b"xy")
    calibration.speed_timings(str(f), pair, EPYC)
    assert len(calls) == 12


def test_a_backend_that_fails_its_timing_is_not_chosen(monkeypatch):
    from rag.readers import auto, calibration

    def broken(model, backends, profile, refresh=False):
        raise MemoryError("bf16 copy does not fit")

    monkeypatch.setattr(calibration, "speed_timings", broken)
    monkeypatch.setattr(calibration, "model_room", lambda model: None)
    monkeypatch.setattr(auto, "cpu_profile", lambda refresh=False: EPYC)
    monkeypatch.setattr(auto, "_installed", lambda module: module in ("torch", "transformers", "llama_cpp"))
    c = choose_backend("qwen2.5-coder-0.5b", "cpu")
    assert c.backend == "llama-cpp" and "timing it failed (MemoryError)" in c.reason


def test_calibration_prompts_are_an_evaluations_calls():
    from rag.readers.calibration import calibration_prompts

    warm, timed = calibration_prompts("kandpal")
    assert [len(c) for c in warm] == [1, 1] and [len(c) for c in timed] == [2, 4]
    closed, rag = timed
    assert all(p.count("Q:") == 4 for p in closed + rag)  # 3 demonstrations and the question
    assert len(set(rag)) == 4 and min(len(p.split()) for p in rag) > 300  # k=3 ~80-word passages each
    assert not any(p in q for p in closed for q in rag)


def test_a_candidate_that_would_not_fit_is_neither_timed_nor_chosen():
    fast = {"llama-cpp gguf": {"seconds": 10.0}, "torch bf16": {"seconds": 4.0}}
    seven_b = {"params": 7_600_000_000, "memory_bytes": 12 * 2**30, "disk_bytes": 500 * 2**30, "dequantized": False}
    c = choose_backend("/models/qwen-7b.Q4_K_M.gguf", "cpu", profile=EPYC, available=ALL, cuda=False, timings=fast, room=seven_b)
    assert c.backend == "llama-cpp" and "would need ~18.4 GB of memory and 12.0 GB is available" in c.reason
    # enough memory, but the first load's float32 copy (30 GB) does not fit on the cache's disk
    disk = {**seven_b, "memory_bytes": 64 * 2**30, "disk_bytes": 20 * 2**30}
    c = choose_backend("/models/qwen-7b.Q4_K_M.gguf", "cpu", profile=EPYC, available=ALL, cuda=False, timings=fast, room=disk)
    assert c.backend == "llama-cpp" and "float32 copy" in c.reason and "20.0 GB free" in c.reason
    # already dequantized: no copy to write
    c = choose_backend("/models/qwen-7b.Q4_K_M.gguf", "cpu", profile=EPYC, available=ALL, cuda=False, timings=fast,
                       room={**disk, "dequantized": True})
    assert (c.backend, c.precision) == ("torch", "bf16") and c.measured["room"]["params"] == 7_600_000_000


def test_model_room_reads_the_gguf_header():
    from rag.readers.calibration import model_room
    from rag.readers.models import is_installed

    if not is_installed("smollm2-135m"):
        pytest.skip("smollm2-135m not installed")
    pytest.importorskip("gguf")
    room = model_room("smollm2-135m")
    assert room["params"] == 134_515_008 and room["disk_bytes"] > 0  # SmolLM2-135M, embeddings included
    assert room["memory_bytes"] is None or room["memory_bytes"] > 0
    assert model_room("/no/such/model.gguf") is None


def test_gguf_param_count_reads_only_the_header(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    from rag.readers.models import gguf_param_count

    path = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.name", "tiny")
    w.add_uint32("llama.context_length", 64)
    w.add_array("tokenizer.ggml.tokens", ["a", "bc", "déf"])
    w.add_array("tokenizer.ggml.scores", [0.5, 1.5, 2.5])
    w.add_tensor("a.weight", np.zeros((3, 4), dtype=np.float32))
    w.add_tensor("b.bias", np.zeros(5, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert gguf_param_count(path) == 17
    assert gguf_param_count(path) == sum(int(t.n_elements) for t in gguf.GGUFReader(str(path)).tensors)
    (tmp_path / "x.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_param_count(tmp_path / "x.gguf")
    (tmp_path / "cut.gguf").write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated"):
        gguf_param_count(tmp_path / "cut.gguf")
