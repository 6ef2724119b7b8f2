"""`backend: auto`: pick the reader backend and precision this machine runs fastest, by a documented rule.

    from rag.readers.auto import choose_backend
    choice = choose_backend("qwen2.5-coder-0.5b", device="auto")
    choice.backend, choice.precision   # ("torch", "bf16") on AMX or AVX512-BF16 CPUs, ("ct2", "int8") with VNNI
                                       # but no bf16 units, ("llama-cpp", "gguf") on AVX2-only CPUs
    choice.reason                      # one sentence for logs and the run manifest
    choice.measured                    # the machine facts the rule used (choice.as_dict() for JSON)
    reader = load_reader(model, backend=choice.backend, **choice.load_options())

The rule (eval/bench_reader_fast.py measures the constants; eval/results/reader-fast.md has the numbers):

1. CUDA GPU visible (device auto/cuda): "vllm" when installed, else "torch" in bf16 (fp16 on GPUs without bf16).
2. CPU: prefill dominates a QA prompt (~450 prompt tokens for ~5 answer tokens) and is compute-bound, so
   each backend's speed is estimated as (its measured fraction of a matmul peak) x (that peak on this machine):
       torch at precision p:  TORCH_EFFICIENCY x peak[p]        (peak: torch 2048^2 matmul, all cores)
       ct2 int8:              CT2_INT8_EFFICIENCY x peak[fp32]  (only on CPUs with int8 dot-product units:
                                                                 avx512_vnni / avx_vnni / amx_int8 / ARM i8mm)
       llama.cpp Q4_K_M:      LLAMA_EFFICIENCY x peak[fp32]     (its int8-dot kernels scale with the SIMD width)
   bf16 is a candidate only when the CPU has bf16 matrix instructions (amx_bf16 / avx512_bf16 flags, or
   bf16 on ARM) *and* the measured bf16 matmul beats fp32 by BF16_MIN_GAIN; otherwise fp32.
   The fastest estimate wins if it beats llama.cpp's by MIN_SPEEDUP (a tie is not worth leaving the
   engine earlier runs used); else llama-cpp.
3. Estimated is not measured: llama.cpp's efficiency depends on the model's shapes and quantization types
   (here it runs Qwen2.5-Coder-0.5B at ~0.8 of the fp32 peak and -1.5B at ~0.8 of the *bf16* peak, through
   its int8 dot-product kernels). So when the estimate picks another backend over llama.cpp, both are timed
   once on this machine, for this model, on an evaluation's calls (a closed-book call of 2 prompts and a
   call of 4 k=3 retrieval prompts, after a warm-up; rag.readers.calibration; the faster of two passes, one
   backend loaded at a time), and that backend is kept only
   if it measures MEASURED_MIN_SPEEDUP faster; else llama-cpp. The timings are cached as JSON next to the
   machine profile, keyed by CPU, threads, library versions and the model file (rag.readers.calibration), so this
   costs one measurement per machine and model (seconds for 0.5B, about a minute for 1.5B).
4. int8 (ct2) re-quantizes the weights once more and changes more answers (agreement with llama.cpp 71-77%
   against torch bf16's 84-100%, eval/results/reader-agreement.md), so it is a candidate only on CPUs
   without bf16 units, even where it measures a little faster than torch bf16.
5. A candidate that would not fit is not timed nor chosen: for a GGUF model, torch needs ~2 (bf16) or 4 (fp32)
   bytes a parameter of memory and ct2 ~1, times MEMORY_HEADROOM, against the memory available now; and the
   first load writes a float32 dequantized copy (4 bytes a parameter) to the cache, against its disk's free
   space. Then llama-cpp, whose quantized weights are the smallest.
6. A backend that cannot run the model is never chosen: llama-cpp needs llama_cpp and a GGUF (named model
   or .gguf path); torch needs torch and transformers; ct2 needs ctranslate2 (and transformers to convert).

The CPU facts and matmul peaks come from rag.device.cpu_profile: measured once per machine (~2 s) and cached
as JSON under $RAG_CACHE/machine/ (else ~/.cache/rag/machine/), keyed by CPU model, flags, torch version and
thread count.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass, field

from rag.device import choose_cpu_precision, cpu_profile
from rag.errors import BadInputError
from rag.readers import calibration

log = logging.getLogger(__name__)

# what a backend reaches, as a fraction of a matmul peak, calibrated on seconds per question (closed-book + two
# k=3 retrieval prompts; eval/results/reader-fast.md). torch: ~0.5 of the peak of its precision (the AMX
# machine: bf16 prefill 52% of the bf16 peak; the AVX512-BF16 EPYC here: torch bf16 2.2-2.4x llama.cpp per
# question at bf16/fp32 peaks 2.2x); llama.cpp Q4_K_M ~0.45 of the fp32 peak (AMX machine: 46%).
TORCH_EFFICIENCY = 0.5
LLAMA_EFFICIENCY = 0.45
# CTranslate2 int8 over the fp32 peak: its lone-prompt prefill reached 2.9x the fp32 peak here, but per question
# it ran at ~0.8-0.9x torch bf16 (about 2x llama.cpp), so 0.9; and its answers match llama.cpp's less often
# (int8 re-quantization; eval/results/reader-agreement.md). It wins where bf16 units are missing but VNNI is not.
CT2_INT8_EFFICIENCY = 0.9
MIN_SPEEDUP = 1.5  # estimated speed over llama.cpp's needed to leave llama.cpp
MEASURED_MIN_SPEEDUP = 1.2  # measured speed over llama.cpp's needed to leave it (a measurement: a smaller margin)
BYTES_PER_PARAM = {"bf16": 2, "fp32": 4, "fp16": 2, "int8": 1}
MEMORY_HEADROOM = 1.3  # activations, the KV cache and the tokenizer on top of the weights


@dataclass(frozen=True)
class Choice:
    """A backend (READERS name) and precision ("bf16", "fp32", "fp16"; "gguf": the file's own quantization;
    "auto": the engine decides), why, and the measurements behind it."""

    backend: str
    precision: str
    reason: str
    measured: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def load_options(self) -> dict:
        """Keyword arguments for load_reader that apply this choice."""
        return {"precision": self.precision} if self.backend in ("torch", "ct2") else {}


# ---- the rule


def choose_precision(device: str = "cpu") -> str:
    """The precision the torch backend uses on `device` when asked for "auto"."""
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device != "cpu":
        return "fp32"
    return choose_cpu_precision(cpu_profile())[0]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def runs_on_llama_cpp(model: str) -> bool:
    """Whether llama.cpp can open `model`: a named model (a GGUF in a wheel) or a .gguf path."""
    from rag.readers.models import NAMED_MODELS

    return model in NAMED_MODELS or str(model).lower().endswith(".gguf")


def check_model_ref(model: str) -> None:
    """A model `auto` can open: a named model, an existing file or folder, or a hub id ("owner/name"). Anything
    else fails here, naming the choices, instead of after a hub lookup that cannot succeed."""
    from pathlib import Path

    from rag.readers.models import NAMED_MODELS

    if model in NAMED_MODELS or Path(model).expanduser().exists():
        return
    if Path(model).suffix.lower() == ".gguf":
        raise BadInputError(f"GGUF file {model} does not exist")
    if model.count("/") == 1 and not model.startswith(("/", ".", "~")):
        return  # a Hugging Face hub id
    raise BadInputError(f"unknown model {model!r}: not a named model ({', '.join(sorted(NAMED_MODELS))}), an existing "
                        "file or folder, nor a Hugging Face id (owner/name)")


def choose_backend(
    model: str,
    device: str = "auto",
    *,
    profile: dict | None = None,
    available: set[str] | None = None,
    cuda: bool | None = None,
    timings: dict | None = None,
    room: dict | None = None,
    refresh: bool = False,
) -> Choice:
    """The backend and precision to read `model` with on this machine (see the module doc for the rule).

    `profile` (a cpu_profile()-shaped dict), `available` (backend names whose libraries are installed),
    `cuda`, `timings` (speed_timings()-shaped) and `room` (calibration.model_room()'s facts: params, memory_bytes, disk_bytes,
    dequantized) replace what this machine reports; tests use them to simulate other machines. On a simulated
    machine (a `profile` given) nothing is timed nor sized unless `timings` / `room` are given. `refresh` measures
    the machine profile and the timings again instead of reading them from the cache.
    """
    measure = profile is None
    device = (device or "auto").lower()
    if device not in ("auto", "cpu", "cuda", "gpu") and not device.startswith("cuda:"):
        raise BadInputError(f"unknown device {device!r}; use auto, cpu or cuda")
    if available is None:
        available = set()
        if _installed("torch") and _installed("transformers"):
            available.add("torch")
        if _installed("llama_cpp"):
            available.add("llama-cpp")
        if _installed("vllm"):
            available.add("vllm")
        if _installed("ctranslate2") and _installed("transformers"):
            available.add("ct2")
    gguf = runs_on_llama_cpp(model)
    if device != "cpu":
        if cuda is None:
            cuda = "torch" in available and _cuda_available()
        if cuda:
            if "vllm" in available:
                return Choice("vllm", "auto", "CUDA GPU and vLLM installed: vLLM's batched engine", {"cuda": True})
            if "torch" in available:
                prec = choose_precision("cuda") if profile is None else profile.get("cuda_precision", "bf16")
                return Choice("torch", prec, f"CUDA GPU: torch in {prec}", {"cuda": True})
        elif device.startswith(("cuda", "gpu")):
            raise BadInputError(f"device {device!r} asked for, but no CUDA GPU is visible; use auto or cpu")
    llama_ok = "llama-cpp" in available and gguf
    if not available & {"torch", "ct2"}:
        if llama_ok:
            return Choice("llama-cpp", "gguf", "torch/transformers and ctranslate2 not installed", {})
        raise BadInputError(
            f"no reader backend can run {model!r} here: install torch and transformers (pip install 'rag[transformers]')"
            + (" or llama-cpp-python (pip install 'rag[readers]')" if gguf else "")
        )
    profile = profile if profile is not None else cpu_profile(refresh=refresh)
    peaks = profile["matmul_gflops"]
    llama_est = LLAMA_EFFICIENCY * peaks["fp32"]
    # backend -> (precision, estimated prefill GFLOP/s, why)
    candidates = {}
    if "torch" in available:
        precision, why = choose_cpu_precision(profile)
        candidates["torch"] = (precision, TORCH_EFFICIENCY * peaks[precision], why)
    if "ct2" in available and profile.get("int8_flags"):
        candidates["ct2"] = ("int8", CT2_INT8_EFFICIENCY * peaks["fp32"], f"int8 dot-product units ({', '.join(profile['int8_flags'])})")
    measured = {**profile, "estimated_prefill_speedup_over_llama_cpp": {k: round(v[1] / llama_est, 3) for k, v in candidates.items()}}
    if not candidates:
        if llama_ok:
            return Choice("llama-cpp", "gguf", "torch not installed and no int8 dot-product units for ct2", measured)
        raise BadInputError(f"no reader backend can run {model!r} on this CPU: install torch and transformers (pip install 'rag[transformers]')")
    backend = max(candidates, key=lambda k: candidates[k][1])
    precision, est, why = candidates[backend]
    speedup = est / llama_est
    if not llama_ok:
        missing = "not a GGUF model" if not gguf else "llama-cpp-python not installed"
        return Choice(backend, precision, f"{why}; llama.cpp not an option ({missing})", measured)
    if speedup < MIN_SPEEDUP:
        return Choice("llama-cpp", "gguf", f"{why}; best other estimate ({backend} {precision}) only {speedup:.1f}x "
                      f"llama.cpp's prefill (< {MIN_SPEEDUP})", measured)
    estimate = f"{backend} {precision} prefill estimated {speedup:.1f}x llama.cpp's"
    if room is None and measure:
        room = calibration.model_room(model)
    if room:
        short = fits(backend, precision, room)
        measured["room"] = room
        if short:
            return Choice("llama-cpp", "gguf", f"{why}; {estimate}, but {short}", measured)
    if timings is None and measure:
        try:
            timings = calibration.speed_timings(model, [("llama-cpp", "gguf"), (backend, precision)], profile, refresh=refresh)
        except Exception as e:  # a backend that cannot run the model here is not chosen
            log.warning("backend auto: timing %s %s against llama.cpp failed (%s: %s); using llama.cpp", backend,
                        precision, type(e).__name__, e)
            return Choice("llama-cpp", "gguf", f"{why}; {estimate}, but timing it failed ({type(e).__name__})", measured)
    if timings:
        ours, ref = timings[f"{backend} {precision}"]["seconds"], timings["llama-cpp gguf"]["seconds"]
        gain = ref / ours
        measured["timed_seconds"] = {k: v["seconds"] for k, v in timings.items()}
        measured["measured_speedup_over_llama_cpp"] = round(gain, 3)
        if gain >= MEASURED_MIN_SPEEDUP:
            return Choice(backend, precision, f"{why}; {backend} {precision} measured {gain:.2f}x llama.cpp's speed on "
                          f"an evaluation's prompts here (>= {MEASURED_MIN_SPEEDUP})", measured)
        return Choice("llama-cpp", "gguf", f"{why}; {estimate}, but measured only {gain:.2f}x on an evaluation's "
                      f"prompts here (< {MEASURED_MIN_SPEEDUP})", measured)
    return Choice(backend, precision, f"{why}; {estimate} (>= {MIN_SPEEDUP})", measured)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# ---- will it fit


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def fits(backend: str, precision: str, room: dict) -> str | None:
    """Why `backend` in `precision` would not fit (a phrase), or None."""
    need = room["params"] * BYTES_PER_PARAM.get(precision, 4) * MEMORY_HEADROOM
    if room.get("memory_bytes") is not None and need > room["memory_bytes"]:
        return f"{backend} {precision} would need ~{_gib(need)} of memory and {_gib(room['memory_bytes'])} is available"
    copy = room["params"] * 4
    if not room.get("dequantized") and room.get("disk_bytes") is not None and copy > room["disk_bytes"]:
        return (f"its first load writes a ~{_gib(copy)} float32 copy and the cache's disk has "
                f"{_gib(room['disk_bytes'])} free")
    return None
