"""Semantic search on: a fresh in-memory vector index per test, and no embedding thread left
writing when the test's database is flushed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from knowledge.semantic import vectors


@pytest.fixture
def semantic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(vectors, "_index", vectors.VectorIndex())
    with override_settings(KNOWLEDGE_SEMANTIC=True):
        yield
    deadline = time.monotonic() + 30
    while vectors.vectors_maintaining():
        assert time.monotonic() < deadline, "the vectors' thread was still running 30 s after the test"
        time.sleep(0.05)
