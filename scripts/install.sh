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
.venv/bin/python -m pip install -q -e ".[${RAG_EXTRAS:-all}]"
echo "installed: $(.venv/bin/python -c 'import rag, torch; print("rag", rag.__version__, "torch", torch.__version__)')"
