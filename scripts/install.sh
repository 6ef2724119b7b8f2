#!/usr/bin/env bash
# Installs rag and every extra into .venv on a fresh machine. Safe to re-run.
# torch is pinned to 2.13.0 first: on these CPU machines that is the local CPU wheel, and installing it
# before sentence-transformers stops pip from pulling an unpinned CUDA build (GBs). Set RAG_TORCH to
# another requirement (e.g. "torch==2.13.0" from a CUDA index) where a GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q "${RAG_TORCH:-torch==2.13.0}"
# llama-cpp-python compiles llama.cpp here with -march=native, which on AMX CPUs also compiles its AMX
# kernels; their weight buffers crash llama-cpp-python 0.3.x in VMs like these. Built without AMX, the
# repacked AVX-512 kernels work instead (Q4_0 prefill ~1.4x faster). Rebuilt only if the installed build
# has AMX; a CMAKE_ARGS you set (e.g. -DGGML_CUDA=on) is used as is.
EXTRAS=",${RAG_EXTRAS:-all},"
if [[ "$EXTRAS" =~ ,(all|readers|ladder), ]] && [ "$(uname -m)" = x86_64 ] && ! .venv/bin/python -c \
    "import sys, llama_cpp; sys.exit(b'AMX_INT8 = 1' in llama_cpp.llama_print_system_info())" 2>/dev/null; then
  NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'}" \
    .venv/bin/python -m pip install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python>=0.3,<0.4"
fi
.venv/bin/python -m pip install -q -e ".[${RAG_EXTRAS:-all}]"
echo "installed: $(.venv/bin/python -c 'import rag, torch; print("rag", rag.__version__, "torch", torch.__version__)')"
