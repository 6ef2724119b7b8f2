"""Evaluation: buckets by relevant-document count, confidence intervals, sampling, runs and reports."""
