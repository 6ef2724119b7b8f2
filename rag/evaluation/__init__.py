"""Evaluation: buckets by relevant-document count, confidence intervals, sampling, runs and reports."""
from rag.buckets import UNLINKED, Buckets
from rag.evaluation.adaptive import adaptive_retrieval, learn_policy
from rag.evaluation.config import EvalConfig, load_config
from rag.evaluation.runner import run_eval

__all__ = ["UNLINKED", "Buckets", "EvalConfig", "adaptive_retrieval", "learn_policy", "load_config", "run_eval"]
