"""Which files are indexed, incrementally, and kept fresh while the server runs."""

from __future__ import annotations

import asyncio
import os
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from knowledge import indexer
from knowledge.indexer import index_update
from knowledge.models import Chunk, Document
from tests.knowledge.conftest import citations, search

pytestmark = pytest.mark.django_db(transaction=True)


def indexed() -> list[str]:
    return sorted(Document.objects.values_list("path", flat=True))


def test_only_notes_inside_the_folder_are_indexed(notes, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("heron password outside\n")
    (notes / "escape.md").symlink_to(secret)
    (notes / "inside-link.md").symlink_to(notes / "real.md")
    (notes / "real.md").write_text("# Real\n\nheron\n")
    (notes / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(notes / "pipe.md")
    (notes / ".obsidian").mkdir()
    (notes / ".obsidian" / "cache.md").write_text("heron")
    (notes / "photo.md").write_bytes(b"\x89PNG\x00\x00heron")
    (notes / "script.py").write_text("heron = 1")
    (notes / "sub").mkdir()
    (notes / "sub" / "deep.txt").write_text("heron deep")
    with override_settings(KNOWLEDGE_MAX_FILE_BYTES=100):
        (notes / "big.md").write_text("heron " * 50)
        report = index_update()
    assert indexed() == ["real.md", "sub/deep.txt"]
    assert report.added == 2 and report.skipped == 2  # the binary and the big file were opened, not indexed
    assert not Chunk.objects.filter(body__contains="outside").exists()


def test_a_file_swapped_for_a_symlink_after_the_walk_is_refused(notes, tmp_path, monkeypatch):
    (tmp_path / "secret.md").write_text("outside\n")
    (notes / "a.md").write_text("inside\n")
    walk = indexer.notes_on_disk

    def swapped(*args, **kwargs):
        found = walk(*args, **kwargs)
        (notes / "a.md").unlink()
        (notes / "a.md").symlink_to(tmp_path / "secret.md")
        return found

    monkeypatch.setattr(indexer, "notes_on_disk", swapped)
    index_update()
    assert indexed() == []


def test_only_changed_files_are_read_again(notes, monkeypatch):
    past = time.time_ns() - 10**11
    for number in range(20):
        (notes / f"n{number}.md").write_text(f"note {number}\n")
        os.utime(notes / f"n{number}.md", ns=(past, past))  # older than the racy window
    assert index_update().added == 20
    read = []
    original = indexer._read_note
    monkeypatch.setattr(indexer, "_read_note", lambda state, roots: read.append(state.path) or original(state, roots))
    os.utime(notes / "n3.md", ns=(time.time_ns() - 10**10,) * 2)  # unchanged size, older mtime
    (notes / "n4.md").unlink()
    (notes / "new.md").write_text("new\n")
    report = index_update()
    assert sorted(read) == ["n3.md", "new.md"]
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    assert "n4.md" not in indexed() and Chunk.objects.count() == 20


def test_a_file_edited_right_after_it_was_read_is_read_again(notes):
    note = notes / "quick.md"
    note.write_text("first\n")
    index_update()
    assert Document.objects.get().mtime_ns == -1  # too recent to trust
    stamp = note.stat().st_mtime_ns
    note.write_text("other\n")  # same size
    os.utime(note, ns=(stamp, stamp))  # and the same mtime, as within one timestamp tick
    index_update()
    assert Chunk.objects.get().body == "other"


def test_folders_no_longer_configured_are_dropped(notes, tmp_path):
    (notes / "a.md").write_text("a\n")
    index_update()
    other = tmp_path / "other"
    other.mkdir()
    with override_settings(KNOWLEDGE_DIRS=[str(other)]):
        assert index_update().removed == 1
    assert indexed() == []


async def poll(query: str, want: object, seconds: float = 5.0) -> float:
    """Search until the result's citations satisfy `want`; the seconds it took."""
    started = time.monotonic()
    while True:
        found = citations(await search(query))
        if want(found):
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, found
        await asyncio.sleep(0.2)


async def test_added_changed_and_deleted_notes_show_within_five_seconds(notes):
    (notes / "birds.md").write_text("# Birds\n\nA heron by the pond.\n")
    assert citations(await search("heron")) == ["birds.md:3"]  # the first search indexes
    (notes / "owl.md").write_text("# Owls\n\nA barn owl in the attic.\n")
    await poll("barn owl", lambda found: found == ["owl.md:3"])
    (notes / "owl.md").write_text("# Owls\n\nA tawny owl, not a barn one, in the big oak tree.\n")
    await poll("tawny", lambda found: found == ["owl.md:3"])
    (notes / "owl.md").unlink()
    await poll("tawny owl", lambda found: found == [])
    (notes / "birds.md").rename(notes / "waders.md")
    await poll("heron", lambda found: found == ["waders.md:3"])


def test_the_command_rebuilds_with_a_progress_bar(notes):
    past = time.time_ns() - 10**11
    for number in range(450):
        (notes / f"n{number}.md").write_text(f"note {number}\n")
        os.utime(notes / f"n{number}.md", ns=(past, past))
    out = StringIO()
    call_command("index_knowledge", stdout=out)
    assert "450/450 files" in out.getvalue() and "450 added" in out.getvalue()
    call_command("index_knowledge", stdout=out)
    assert "450 added, 0 updated" in out.getvalue()  # a rebuild reads everything again
    (notes / "n0.md").unlink()
    changed = StringIO()
    call_command("index_knowledge", "--changed", stdout=changed)
    assert "1 removed, 449 unchanged" in changed.getvalue()


def test_the_command_without_folders(settings):
    settings.KNOWLEDGE_DIRS = []
    with pytest.raises(CommandError, match="KNOWLEDGE_DIRS"):
        call_command("index_knowledge", stdout=StringIO())


def test_the_admin_lists_documents_with_their_chunk_counts(notes, admin_client):
    (notes / "long.md").write_text("".join(f"line {n}\n" for n in range(30)))
    index_update()
    page = admin_client.get("/admin/knowledge/document/").content.decode()
    assert "long.md" in page and ">4<" in page  # 30 lines: 4 overlapping passages
    assert admin_client.get("/admin/knowledge/document/add/").status_code == 403
