"""Searching the index (the selectors: reads only).

The user's query is never handed to the database's query language: it is cut into words
(letters and digits), each word quoted (FTS5) or passed as a plain lexeme (PostgreSQL), and
the words are OR-ed, so quotes, `*`, `NEAR(`, `-` or `:` are just characters. Ranking decides:
a passage with more of the rarer words ranks first (BM25 on SQLite, each word's BM25 IDF on
PostgreSQL: `knowledge.sql`), and words in the file's name, title and headings count more than
words in the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection

from knowledge.fulltext import query_words
from knowledge.sql import Backend, PostgresBackend, Row, SqliteBackend
from tools.base import ToolError

MAX_QUERY_CHARS = 2000
MAX_TERMS = 24
# Candidates fetched per passage asked for: overlapping passages of one note are merged.
OVERSAMPLE = 4
_WORD = re.compile(r"\w+", re.UNICODE)
# A word that matches more passages than this is left out when the query has rarer words.
FREQUENT_PASSAGES = 1000
# When every word is that frequent, at most this many matches are ranked.
FREQUENT_RANKED = 100


@dataclass(frozen=True)
class Hit:
    root: str
    path: str
    line: int  # the passage's line that best matches the query: the one to cite
    start_line: int
    heading: str
    lines: list[str]
    rank: float  # lower is better


def query_terms(query: str) -> list[str]:
    """The query's searchable words, lower-cased, de-duplicated; a tool error when there are none."""
    if len(query) > MAX_QUERY_CHARS:
        raise ToolError(f"The query is too long ({len(query)} characters; at most {MAX_QUERY_CHARS}). Use a few words.")
    if not (terms := query_words(query, max_terms=MAX_TERMS)):
        raise ToolError("The query has no words to search for; give a few keywords.")
    return terms


def search_passages(terms: list[str], limit: int, *, meaning: str | None = None) -> list[Hit]:
    """The best `limit` passages for the terms, best first, at most one per region of a note.
    With `meaning` (the query as the user wrote it; KNOWLEDGE_SEMANTIC), the passages nearest
    to it in meaning are fused into the ranking (`knowledge.semantic.hybrid`)."""
    count = limit * OVERSAMPLE
    if meaning is not None:
        # Imported only when semantic search is on: it brings NumPy and the model's code.
        from knowledge.semantic.hybrid import CANDIDATES, fuse

        count = max(count, CANDIDATES)
    with connection.cursor() as cursor:
        backend = PostgresBackend(cursor) if connection.vendor == "postgresql" else SqliteBackend(cursor)
        rows = _rows(backend, terms, count)
    if meaning is not None:
        rows = fuse(rows, meaning)
    hits: list[Hit] = []
    taken: dict[tuple[str, str], list[int]] = {}
    for _, root, path, start_line, heading, body, rank in rows:
        lines = body.split("\n")
        line = start_line + _best_line(lines, terms)
        # Overlapping passages of a note share lines: the better-ranked one stands for both.
        if any(abs(line - other) < len(lines) for other in taken.get((root, path), [])):
            continue
        taken.setdefault((root, path), []).append(line)
        hits.append(Hit(root, path, line, start_line, heading, lines, float(rank)))
        if len(hits) == limit:
            break
    return hits


def _rows(backend: Backend, terms: list[str], count: int) -> list[Row]:
    """Ranking costs the database for every passage that matches: with 10,000 notes a word such
    as "time" matched 187,000 of 196,000 passages, and one search took most of a second. So words
    that match more than FREQUENT_PASSAGES passages (counted up to that bound, which costs
    little) are left out when the query has rarer ones: they would add little to the ranking, as
    stopwords. When every word is that frequent, the passages must hold them all (or, when none
    does, any), and only the first FREQUENT_RANKED of them are ranked: a query of only common
    words has no best answer worth a slow search."""
    counts = backend.counts(terms, FREQUENT_PASSAGES)
    rare = [term for term, found in zip(terms, counts, strict=True) if found < FREQUENT_PASSAGES]
    if rare:
        return backend.search(rare, "or", ranked=len(rare) * FREQUENT_PASSAGES, count=count)
    for operator in ("and", "or"):
        rows = backend.search(terms, operator, ranked=FREQUENT_RANKED, count=count)
        if rows:
            return rows
    return []


def _best_line(lines: list[str], terms: list[str]) -> int:
    """Index of the line holding the most query words (by a short prefix, to meet the stemmer
    half-way: "herons" matches "heron"). When none does (a passage found by its meaning, or by
    its file's name), the first line of text: not a heading, not blank."""
    prefixes = [term[:5] for term in terms]
    text = (index for index, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
    best, best_score = next(text, 0), 0
    for index, line in enumerate(lines):
        words = [word.lower() for word in _WORD.findall(line)]
        score = sum(1 for prefix in prefixes if any(word.startswith(prefix) for word in words))
        if score > best_score:
            best, best_score = index, score
    return best
