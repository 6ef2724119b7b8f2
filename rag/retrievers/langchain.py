"""LangChain adapter: any rag Retriever as a `langchain_core.retrievers.BaseRetriever`.

    from rag.retrievers import load_index
    from rag.retrievers.langchain import as_langchain
    docs = as_langchain(load_index("indexes/bm25"), k=5).invoke("who wrote hamlet")

Each Document: page_content = passage_text(title, text); metadata = {pid, doc_id, title, score, rank, row}.
langchain-core is imported only when an adapter is made (pip install 'rag[langchain]').
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from rag.corpus.store import passage_text
from rag.errors import require

if TYPE_CHECKING:  # pragma: no cover
    from rag.retrievers.base import Retriever
    from rag.types import Hit


def _documents(retriever: "Retriever", hits: Sequence["Hit"]):
    from langchain_core.documents import Document

    passages = retriever.passages(hits)
    return [
        Document(
            page_content=passage_text(p.title, p.text),
            metadata={"pid": h.pid, "doc_id": p.doc_id, "title": p.title, "score": h.score, "rank": h.rank, "row": h.row},
        )
        for h, p in zip(hits, passages)
    ]


@lru_cache(maxsize=None)
def adapter_class():
    """The BaseRetriever subclass, created on first use so that importing rag never imports langchain."""
    retrievers = require("langchain_core.retrievers", "langchain")
    from pydantic import ConfigDict, Field

    class RagLangChainRetriever(retrievers.BaseRetriever):
        """Wraps a rag Retriever; returns the top `k` passages per query as Documents."""

        model_config = ConfigDict(arbitrary_types_allowed=True)
        retriever: object
        k: int = Field(default=4, gt=0)

        def _get_relevant_documents(self, query: str, *, run_manager=None):
            return _documents(self.retriever, self.retriever.search(query, self.k))

    return RagLangChainRetriever


def as_langchain(retriever: "Retriever", k: int = 4):
    """A LangChain retriever returning the top `k` passages of `retriever` as Documents."""
    return adapter_class()(retriever=retriever, k=k)
