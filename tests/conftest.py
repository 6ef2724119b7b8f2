"""Shared fixtures. Real data lives in ../shared/data (or $RAG_SHARED_DATA) and is never copied here."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only reference data; CI always has it, so missing data fails there instead of skipping."""
    if not SHARED_DATA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {SHARED_DATA}")
        pytest.skip(f"shared data not found at {SHARED_DATA} (set RAG_SHARED_DATA)")
    return SHARED_DATA
