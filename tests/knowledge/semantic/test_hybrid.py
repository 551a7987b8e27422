"""`search_knowledge` with KNOWLEDGE_SEMANTIC: a note found by what it means, kept in step with
the folder while the server runs; on both databases (the suite runs on each)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.knowledge.conftest import citations, search
from tools.base import ToolResult

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_NOTES = {
    "money/invoices.md": "# Invoices\n\nInvoice 4417 was paid on 3 March by bank transfer.\n",
    "kitchen/bread.md": "# Bread\n\nKnead the dough for ten minutes, then let it rise overnight.\n",
    "car.md": "# Car\n\nThe tyres were changed in October; next service at 90,000 km.\n",
    "work/meetings.md": "# Standup\n\nThe team meets at nine on Mondays to plan the week.\n",
}
HERON = "# Wildlife\n\nThe grey heron nests in tall reeds beside the lake in early spring.\n"
BREEDING = "where do wading birds breed"


def write(root: Path, notes: dict[str, str]) -> None:
    for path, text in notes.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


async def search_until(query: str, expect: str | None, seconds: float = 15) -> ToolResult:
    """Search as the model would, until the first citation is `expect` (None: anything but a
    citation of a deleted note) or the time is up: passages are embedded in the background."""
    deadline = time.monotonic() + seconds
    while True:
        result = await search(query)
        first = (citations(result) or [None])[0]
        if first == expect or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


async def test_a_note_is_found_by_meaning_when_no_word_matches(notes, semantic):
    write(notes, {**OTHER_NOTES, "nature/heron.md": HERON})
    result = await search_until(BREEDING, "nature/heron.md:3")
    assert citations(result)[0] == "nature/heron.md:3"
    assert "grey heron nests" in result.content


async def test_without_semantic_search_the_same_question_finds_nothing(notes):
    write(notes, {**OTHER_NOTES, "nature/heron.md": HERON})
    result = await search(BREEDING)
    assert result.ok and citations(result) == []


async def test_a_rare_word_still_ranks_its_note_first(notes, semantic):
    write(
        notes, {**OTHER_NOTES, "nature/heron.md": HERON, "people/anna.md": "# Anna\n\nAnna's cat is called Alfonso.\n"}
    )
    await search_until(BREEDING, "nature/heron.md:3")
    assert citations(await search("Alfonso"))[0] == "people/anna.md:3"


async def test_changed_and_deleted_notes_change_meaning_while_the_server_runs(notes, semantic):
    write(notes, {**OTHER_NOTES, "nature/heron.md": HERON})
    await search_until(BREEDING, "nature/heron.md:3")
    started = time.monotonic()
    (notes / "nature/heron.md").write_text("# Wildlife\n\nThe fox sleeps in a den under the old oak.\n")
    (notes / "kitchen/bread.md").unlink()
    # No word of this question is in the note: only its new vector can find it.
    result = await search_until("which animal hides in a burrow beneath a tree", "nature/heron.md:3")
    assert citations(result)[0] == "nature/heron.md:3" and "fox sleeps" in result.content
    assert time.monotonic() - started < 5
    assert "grey heron nests" not in (await search(BREEDING)).content
    assert "kitchen/bread.md:3" not in citations(await search("how long to knead the dough for bread"))


async def test_a_question_the_notes_cannot_answer_finds_nothing(notes, semantic):
    write(notes, {**OTHER_NOTES, "nature/heron.md": HERON})
    await search_until(BREEDING, "nature/heron.md:3")
    result = await search("quantum chromodynamics lattice gauge")
    assert result.ok and citations(result) == [] and "No passage" in result.content


async def test_a_query_the_model_cannot_read_is_still_searched_by_its_words(notes, semantic):
    write(notes, {**OTHER_NOTES, "nature/heron.md": HERON})
    await search_until(BREEDING, "nature/heron.md:3")
    result = await search("heron \ud800 nests")  # valid JSON, but no text to the tokenizer
    assert result.ok and citations(result)[0] == "nature/heron.md:3"
