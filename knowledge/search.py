"""Searching the index (the selectors: reads only).

The user's query is never handed to the database's query language: it is cut into words
(letters and digits), each word quoted (FTS5) or passed as a plain lexeme (PostgreSQL), and
the words are OR-ed, so quotes, `*`, `NEAR(`, `-` or `:` are just characters. Ranking decides:
a passage with more of the rarer words ranks first (BM25 on SQLite, `ts_rank` weighted by
each word's BM25 IDF on PostgreSQL),
and words in the file's name, title and headings count more than words in the body.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection

from tools.base import ToolError

MAX_QUERY_CHARS = 2000
MAX_TERMS = 24
MAX_TERM_CHARS = 64
# Candidates fetched per passage asked for: overlapping passages of one note are merged.
OVERSAMPLE = 4
_WORD = re.compile(r"\w+", re.UNICODE)
# Words that match nearly every passage: they only slow the search down (FTS5 would visit
# every row holding "the") and add nothing to the ranking.
STOPWORDS = frozenset(
    """a about an and are as at be but by can could did do does for from had has have how i if in
    into is it its me my of on or our s so than that the their them then there these they this to
    was we were what when where which who whom why will with would you your""".split()
)

# The best rows first, then their text: joining before the LIMIT would read every match's row.
SQLITE_SEARCH = """
SELECT d.root, d.path, c.start_line, c.heading, c.body, f.rank
FROM (
    SELECT rowid, rank FROM knowledge_chunk_fts WHERE knowledge_chunk_fts MATCH %s ORDER BY rank LIMIT %s
) f
JOIN knowledge_chunk c ON c.id = f.rowid
JOIN knowledge_document d ON d.id = c.document_id
ORDER BY f.rank
"""
SQLITE_SEARCH_FREQUENT = """
SELECT d.root, d.path, c.start_line, c.heading, c.body, f.rank
FROM (
    SELECT rowid, rank FROM knowledge_chunk_fts WHERE knowledge_chunk_fts MATCH %s LIMIT %s
) f
JOIN knowledge_chunk c ON c.id = f.rowid
JOIN knowledge_document d ON d.id = c.document_id
ORDER BY f.rank
LIMIT %s
"""
SQLITE_COUNT = "SELECT count(*) FROM (SELECT 1 FROM knowledge_chunk_fts WHERE knowledge_chunk_fts MATCH %s LIMIT %s)"
FREQUENT_PASSAGES = 1000
# BM25 of a passage full of frequent words costs FTS5 up to 30 µs (it reads every position).
FREQUENT_RANKED = 100
# PostgreSQL's ts_rank knows no inverse document frequency (a common word of a file name would
# outrank three rare words of the body), and it weighs label A far more than the weights say.
# So a passage scores as BM25 does with short passages, where term frequency barely counts:
# each query word that it holds adds the word's IDF (from counts the GIN index answers), times
# 2 in the names (label A), 1.5 in a heading (B), 1 in the body (D): a word of the file name
# ranks a note first, but not past a passage that holds two rarer words of the query (4, as
# for FTS5's columns, let a common word of a name outrank the fact's passage on the test set).
# ts_rank only breaks ties.
POSTGRES_TERM_COUNTS = "SELECT (SELECT count(*) FROM knowledge_chunk), {counts}"
POSTGRES_TERM_COUNT = "(SELECT count(*) FROM knowledge_chunk WHERE search @@ to_tsquery('english', %s))"
POSTGRES_TERM_RANK = (
    "%s * (2 * (c.search @@ to_tsquery('english', %s))::int + 1.5 * (c.search @@ to_tsquery('english', %s))::int"
    " + (c.search @@ to_tsquery('english', %s))::int)"
)
POSTGRES_SEARCH = """
SELECT d.root, d.path, c.start_line, c.heading, c.body, -({ranks} + 0.01 * ts_rank(c.search, q, 1)) AS rank
FROM knowledge_chunk c
JOIN knowledge_document d ON d.id = c.document_id,
     to_tsquery('english', %s) AS q
WHERE c.search @@ q
ORDER BY rank
LIMIT %s
"""


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
    words = list(dict.fromkeys(word.lower()[:MAX_TERM_CHARS] for word in _WORD.findall(query)))
    if not words:
        raise ToolError("The query has no words to search for; give a few keywords.")
    terms = [word for word in words if word not in STOPWORDS] or words
    return terms[:MAX_TERMS]


def search_passages(terms: list[str], limit: int) -> list[Hit]:
    """The best `limit` passages for the terms, best first, at most one per region of a note."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Quoted lexemes: `terms` hold only letters, digits and '_', never tsquery syntax.
            lexemes = [f"'{term}'" for term in terms]
            cursor.execute(POSTGRES_TERM_COUNTS.format(counts=", ".join([POSTGRES_TERM_COUNT] * len(terms))), lexemes)
            total, *counts = cursor.fetchone()
            weights = [math.log(1 + (total - count + 0.5) / (count + 0.5)) for count in counts]
            sql = POSTGRES_SEARCH.format(ranks=" + ".join([POSTGRES_TERM_RANK] * len(terms)))
            ranked = [
                value
                for weight, lexeme in zip(weights, lexemes, strict=True)
                for value in (weight, f"{lexeme}:A", f"{lexeme}:B", f"{lexeme}:D")
            ]
            cursor.execute(sql, [*ranked, " | ".join(lexemes), limit * OVERSAMPLE])
            rows = cursor.fetchall()
        else:
            rows = _sqlite_rows(cursor, terms, limit * OVERSAMPLE)
    hits: list[Hit] = []
    taken: dict[tuple[str, str], list[int]] = {}
    for root, path, start_line, heading, body, rank in rows:
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


def _sqlite_rows(cursor: Any, terms: list[str], count: int) -> list[tuple[Any, ...]]:
    """BM25 costs FTS5 a few microseconds for every passage that matches: a word found in most
    passages (in 10,000 notes, "time" matched 187,000 of 196,000) made one search take most of a
    second. So words that match more than FREQUENT_PASSAGES passages (counted up to that bound,
    which costs little) are left out when the query has rarer ones: they would add little to
    the ranking, as stopwords. When every word is that frequent, the passages must hold them all
    (or, when none does, any), and only the first FREQUENT_RANKED of them are ranked: a query
    of only common words has no best answer worth a slow search."""
    quoted = {term: f'"{term}"' for term in terms}
    rare = []
    for term in terms:
        cursor.execute(SQLITE_COUNT, [quoted[term], FREQUENT_PASSAGES])
        if cursor.fetchone()[0] < FREQUENT_PASSAGES:
            rare.append(term)
    if rare:
        cursor.execute(SQLITE_SEARCH, [" OR ".join(quoted[t] for t in rare), count])
        return cursor.fetchall()
    for expression in (" AND ".join(quoted.values()), " OR ".join(quoted.values())):
        cursor.execute(SQLITE_SEARCH_FREQUENT, [expression, FREQUENT_RANKED, count])
        rows = cursor.fetchall()
        if rows:
            return rows
    return []


def _best_line(lines: list[str], terms: list[str]) -> int:
    """Index of the line holding the most query words (by a short prefix, to meet the stemmer
    half-way: "herons" matches "heron"); the first line when none does."""
    prefixes = [term[:5] for term in terms]
    best, best_score = 0, 0
    for index, line in enumerate(lines):
        words = [word.lower() for word in _WORD.findall(line)]
        score = sum(1 for prefix in prefixes if any(word.startswith(prefix) for word in words))
        if score > best_score:
            best, best_score = index, score
    return best
