"""Retrievers: BM25, dense (FAISS) and hybrid fusion behind one interface.

Importing this package registers the built-in index kinds; heavy libraries load only when used.
"""
from rag.retrievers import bm25, dense, hybrid  # noqa: F401  (register built-in index kinds)
from rag.retrievers.base import INDEXES, Retriever, load_index

__all__ = ["INDEXES", "Retriever", "load_index"]
