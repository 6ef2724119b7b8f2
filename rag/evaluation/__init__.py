"""Evaluation: buckets by relevant-document count, confidence intervals, sampling, runs and reports."""
from rag.buckets import UNLINKED, Buckets
from rag.evaluation.adaptive import adaptive_retrieval, learn_policy
from rag.evaluation.config import EvalConfig, load_config
from rag.evaluation.dataframes import OpenRun, open_run
from rag.evaluation.runner import run_eval

__all__ = ["UNLINKED", "Buckets", "EvalConfig", "OpenRun", "adaptive_retrieval", "learn_policy", "load_config", "open_run",
           "run_eval"]
