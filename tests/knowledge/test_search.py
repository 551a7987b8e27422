"""`search_knowledge` on a folder of 1,500 generated notes, and every kind of hostile query."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from bench.knowledge_corpus import corpus_write, fact_line
from tests.knowledge.conftest import citations, search

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_facts_note_ranks_first_with_its_line(notes):
    question = next(q for q in corpus_write(notes, 1500, note_bytes=600) if q.note == "people/anna.md")
    result = await search("Where does the heron Alfonso build its nest?")
    assert result.ok
    assert citations(result)[0] == f"people/anna.md:{fact_line(notes, question)}"
    assert question.fact in result.content and "Cite them as path:line" in result.content
    assert len(citations(await search("garden tomato", limit=3))) == 3


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"heron',
        "heron*",
        "*",
        "NEAR(heron pond)",
        "NEAR(",
        "-heron",
        "heron:pond",
        "body:heron",
        "heron AND OR NOT",
        "(heron",
        "^heron",
        "heron & | ! <-> pond",
        "'; DROP TABLE knowledge_chunk; --",
        "héron ünïcode 鹭",
        "\x00heron",
    ],
)
async def test_query_syntax_is_never_interpreted(notes, query):
    (notes / "birds.md").write_text("# Birds\n\nA heron by the pond.\n")
    result = await search(query)
    assert "failed unexpectedly" not in result.content
    if any(word in query.lower() for word in ("heron", "pond")):
        assert citations(result) == ["birds.md:3"]


@pytest.mark.parametrize("query", ["", "   ", "***", '" - : ( )'])
async def test_a_query_without_words_is_an_error_the_model_reads(notes, query):
    result = await search(query)
    assert not result.ok and "no words to search for" in result.content


async def test_absurd_queries_and_limits(notes):
    (notes / "birds.md").write_text("A heron by the pond.\n")
    huge = await search("heron " * 1000)
    assert not huge.ok and "too long" in huge.content
    assert citations(await search(" ".join(f"word{n}" for n in range(300)) + " heron")) == []  # only 24 words used
    assert "less than or equal to 20" in (await search("heron", limit=1000)).content
    assert "greater than or equal to 1" in (await search("heron", limit=0)).content
    nothing = await search("zeppelin")
    assert nothing.ok and "No passage of the notes matches" in nothing.content


async def test_only_stopwords_still_search(notes):
    (notes / "who.md").write_text("The Who played here.\n")
    result = await search("the who")
    # PostgreSQL's `english` configuration drops these words from the index itself.
    assert citations(result) == ([] if connection.vendor == "postgresql" else ["who.md:1"]) and result.ok


async def test_file_names_and_headings_weigh_more_than_the_body(notes):
    (notes / "heron.md").write_text("# Sightings\n\nSeen at dawn.\n")
    (notes / "misc.md").write_text("# Misc\n\nA list of birds: owl, heron, sparrow, and many more words here.\n")
    (notes / "log.md").write_text("# Log\n\n## Heron\n\nSeen twice.\n")
    ranked = [citation.split(":")[0] for citation in citations(await search("heron"))]
    assert ranked[-1] == "misc.md" and set(ranked) == {"heron.md", "misc.md", "log.md"}


async def test_several_folders_are_cited_by_name(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    for root, text in ((work, "heron project"), (home, "heron feeder")):
        root.mkdir()
        (root / "a.md").write_text(text + "\n")
    with override_settings(KNOWLEDGE_DIRS=[f"work={work}", f"home={home}"]):
        assert sorted(citations(await search("heron"))) == ["home/a.md:1", "work/a.md:1"]
        assert citations(await search("feeder")) == ["home/a.md:1"]


async def test_overlapping_passages_of_a_note_are_one_result(notes):
    (notes / "long.md").write_text("".join(f"line {n} heron\n" for n in range(30)))
    lines = [int(citation.split(":")[1]) for citation in citations(await search("heron", limit=10))]
    assert len(lines) == len(set(lines)) and all(abs(a - b) >= 7 for a in lines for b in lines if a != b)


async def test_frequent_words_give_way_to_rare_ones(notes, monkeypatch):
    monkeypatch.setattr("knowledge.search.FREQUENT_PASSAGES", 3)
    for number in range(5):
        (notes / f"day{number}.md").write_text(f"A day of garden work, number {number}.\n")
    (notes / "heron.md").write_text("A heron came to the garden.\n")
    for number in range(4):
        (notes / f"owl{number}.md").write_text(f"An owl sat in oak {number}.\n")
    # "garden" is in 6 passages: left out, so the one passage with the rare word is all there is.
    assert citations(await search("garden heron")) == ["heron.md:1"]
    # Only frequent words: the passages that hold all of them...
    assert citations(await search("garden work day", limit=10))[0].startswith("day")
    assert "heron.md:1" not in citations(await search("garden work day", limit=10))
    # ...or, when none holds them all, any of them.
    assert len(citations(await search("garden owl", limit=20))) == 10


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL keeps word counts (SQLite's FTS5 counts)")
async def test_postgres_word_counts_follow_every_change(notes):
    from asgiref.sync import sync_to_async

    from knowledge.indexer import index_update

    def counted(word: str) -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(passages), 0) FROM knowledge_lexeme WHERE lexeme = %s", [word])
            kept = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM knowledge_chunk WHERE search @@ to_tsquery('english', %s)", [word])
            return kept, cursor.fetchone()[0]

    for number in range(3):
        (notes / f"bird{number}.md").write_text(f"A heron and a sparrow, note {number}.\n")
    await sync_to_async(index_update)()
    assert await sync_to_async(counted)("heron") == (3, 3)
    (notes / "bird0.md").write_text("Only a sparrow now.\n")
    (notes / "bird1.md").unlink()
    await sync_to_async(index_update)()
    assert await sync_to_async(counted)("heron") == (1, 1)
    assert await sync_to_async(counted)("sparrow") == (2, 2)
    (notes / "bird2.md").unlink()
    await sync_to_async(index_update)()
    assert await sync_to_async(counted)("heron") == (0, 0) and await sync_to_async(counted)("sparrow") == (1, 1)
    await sync_to_async(index_update)(rebuild=True)  # a rebuild truncates the tables
    assert await sync_to_async(counted)("sparrow") == (1, 1)
