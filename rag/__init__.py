"""rag: closed-book vs retrieval-augmented question answering, by relevant-document count."""
from rag.types import Document, Hit, Mention, Passage, Prediction, Question

__all__ = ["Document", "Hit", "Mention", "Passage", "Prediction", "Question"]
__version__ = "0.1.0"
