"""Passages' vectors: written for every passage, gone with it, embedded by the command."""

from __future__ import annotations

import os
import threading
import time
from io import StringIO

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from knowledge import apps as knowledge_apps
from knowledge.indexer import index_update
from knowledge.models import Chunk, ChunkVector
from knowledge.semantic.encoder import encoder
from knowledge.semantic.vectors import vector_index, vectors_pending, vectors_update

pytestmark = pytest.mark.django_db(transaction=True)


def settled(notes, count: int) -> None:
    past = time.time_ns() - 10**11
    for number in range(count):
        path = notes / f"n{number}.md"
        path.write_text(f"# Note {number}\n\nThis is note number {number} about topic {number % 7}.\n")
        os.utime(path, ns=(past, past))


def test_every_passage_gets_a_vector_and_loses_it_with_the_passage(notes, semantic):
    settled(notes, 12)
    index_update()
    assert vectors_pending() == 12 and vectors_update() == 12 and vectors_pending() == 0
    index = vector_index()
    index.sync()
    assert len(index) == ChunkVector.objects.count() == Chunk.objects.count() == 12
    (notes / "n0.md").unlink()
    (notes / "n1.md").write_text("# Note 1\n\nNow about something else.\n")
    index_update()
    index.sync()
    assert len(index) == ChunkVector.objects.count() == 10 and vectors_pending() == 1
    nearest = index.nearest(encoder().embed(["note number 1"])[0], 20)
    assert {chunk_id for chunk_id, _ in nearest} == set(ChunkVector.objects.values_list("chunk_id", flat=True))


def test_two_embedders_at_once_embed_each_passage_once(notes, semantic):
    settled(notes, 40)
    index_update()
    done: list[int] = []

    def embed() -> None:
        try:
            done.append(vectors_update())
        finally:
            connection.close()

    threads = [threading.Thread(target=embed) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(done) == 40 == ChunkVector.objects.count()


def test_the_command_embeds_every_passage_with_a_progress_bar(notes, semantic):
    settled(notes, 40)
    out = StringIO()
    call_command("index_knowledge", stdout=out)
    assert "40/40 passages embedded" in out.getvalue() and "40 passages embedded in" in out.getvalue()
    assert ChunkVector.objects.count() == 40


def test_the_admin_shows_how_many_passages_are_embedded(notes, semantic, admin_client):
    settled(notes, 2)
    index_update()
    vectors_update()
    page = admin_client.get("/admin/knowledge/document/").content.decode()
    assert "Passages embedded" in page and page.count('class="field-embedded">1<') == 2


def test_semantic_search_without_its_model_does_not_start(monkeypatch):
    monkeypatch.setitem(knowledge_apps.SEMANTIC_PACKAGES, "no_such_model_package", "no-such-model-package")
    config = apps.get_app_config("knowledge")
    with override_settings(KNOWLEDGE_SEMANTIC=True), pytest.raises(ImproperlyConfigured, match="no-such-model-package"):
        config.ready()
    with override_settings(KNOWLEDGE_SEMANTIC=False):
        config.ready()
