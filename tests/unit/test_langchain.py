"""LangChain adapter over a real BM25 index (langchain-core is a dev dependency)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from rag.artifacts import atomic_dir
from rag.corpus.store import PassageStore, PassageWriter
from rag.retrievers import load_index
from rag.retrievers.bm25 import BM25Retriever
from rag.types import Passage

pytest.importorskip("langchain_core")


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    root = tmp_path_factory.mktemp("lc")
    texts = [("Whale", "Blue whales are the largest animals."), ("Tiger", "Tigers hunt at night."), ("Ocean", "Whales live in the ocean.")]
    with atomic_dir(root / "p") as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(pid=f"d{i}#0", doc_id=f"d{i}", title=t, text=x) for i, (t, x) in enumerate(texts))
        w.close()
    return load_index(BM25Retriever.build(PassageStore(root / "p"), root / "i", progress=False))


def test_documents_carry_text_and_metadata(retriever):
    from langchain_core.retrievers import BaseRetriever

    from rag.retrievers.langchain import as_langchain

    lc = as_langchain(retriever, k=2)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke("blue whale")
    assert len(docs) == 2
    assert docs[0].page_content == "Whale\nBlue whales are the largest animals."
    md = docs[0].metadata
    assert md["pid"] == "d0#0" and md["title"] == "Whale" and md["rank"] == 1 and md["score"] > docs[1].metadata["score"]
    assert [d.metadata["rank"] for d in docs] == [1, 2]
    assert [len(b) for b in lc.batch(["tiger", "ocean whales"])] == [1, 2]


def test_k_is_validated(retriever):
    from pydantic import ValidationError

    from rag.retrievers.langchain import as_langchain

    with pytest.raises(ValidationError):
        as_langchain(retriever, k=0)


def test_importing_rag_does_not_import_langchain():
    code = "import rag.retrievers, rag.retrievers.langchain, sys; print('langchain_core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
