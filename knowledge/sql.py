"""The statements a search runs, in each database's dialect (see `knowledge.search` for the plan).

Both backends take terms that hold only letters, digits and '_' (`search.query_terms`), quoted
as phrases (FTS5) or lexemes (tsquery), so no query syntax can reach the database; the values
themselves are always parameters.
"""

from __future__ import annotations

from typing import Any, Protocol

from knowledge.fulltext import bm25_idf, fts5_counts

Row = tuple[Any, ...]  # chunk id, root, path, start_line, heading, body, rank (lower is better)

# The best rows first, then their text: joining before the LIMIT would read every match's row.
# The inner LIMIT caps how many matches are ranked (BM25 is computed for every one).
SQLITE_SEARCH = """
SELECT c.id, d.root, d.path, c.start_line, c.heading, c.body, f.rank
FROM (SELECT rowid, rank FROM knowledge_chunk_fts WHERE knowledge_chunk_fts MATCH %s LIMIT %s) f
JOIN knowledge_chunk c ON c.id = f.rowid
JOIN knowledge_document d ON d.id = c.document_id
ORDER BY f.rank
LIMIT %s
"""

# PostgreSQL's ts_rank knows no inverse document frequency (a common word of a file name would
# outrank three rare words of the body), and it weighs label A far more than the weights say.
# So a passage scores as BM25 does with short passages, where term frequency barely counts:
# each query word that it holds adds the word's IDF, times 2 in the names (label A), 1.5 in a
# heading (B), 1 in the body (D): a word of the file name ranks a note first, but not past a
# passage that holds two rarer words of the query (4, as for FTS5's columns, let a common word
# of a name outrank the fact's passage on the test set). ts_rank only breaks ties.
# How many passages hold each word, and (the empty lexeme) how many there are: counts kept by
# triggers (migration 0004), one row per word. A word the stemmer splits (`foo_bar`) counts as
# its rarest part; one it drops (a stopword of the `english` configuration) as 0.
POSTGRES_COUNTS = """
SELECT t.term, coalesce(min(l.passages), 0)
FROM unnest(%s::text[]) AS t(term)
LEFT JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', t.term))) AS x(lexeme) ON true
LEFT JOIN knowledge_lexeme l ON l.lexeme = x.lexeme
GROUP BY t.term
"""
POSTGRES_TOTAL = "SELECT coalesce((SELECT passages FROM knowledge_lexeme WHERE lexeme = ''), 0)"
POSTGRES_TERM_RANK = (
    "%s * (2 * (c.search @@ to_tsquery('english', %s))::int + 1.5 * (c.search @@ to_tsquery('english', %s))::int"
    " + (c.search @@ to_tsquery('english', %s))::int)"
)
POSTGRES_SEARCH = """
SELECT c.id, d.root, d.path, c.start_line, c.heading, c.body, -({ranks} + 0.01 * ts_rank(c.search, q, 1)) AS rank
FROM (SELECT id FROM knowledge_chunk WHERE search @@ to_tsquery('english', %s) LIMIT %s) m
JOIN knowledge_chunk c ON c.id = m.id
JOIN knowledge_document d ON d.id = c.document_id,
     to_tsquery('english', %s) AS q
ORDER BY rank
LIMIT %s
"""


class Backend(Protocol):
    def counts(self, terms: list[str], bound: int) -> list[int]:
        """How many passages hold each term, counted up to `bound`."""

    def search(self, terms: list[str], operator: str, *, ranked: int, count: int) -> list[Row]:
        """The best `count` of the first `ranked` passages matching the terms joined by
        `operator` ("and" or "or")."""


class SqliteBackend:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def counts(self, terms: list[str], bound: int) -> list[int]:
        return fts5_counts(self.cursor, "knowledge_chunk_fts", terms, bound)

    def search(self, terms: list[str], operator: str, *, ranked: int, count: int) -> list[Row]:
        expression = f" {operator.upper()} ".join(f'"{term}"' for term in terms)
        self.cursor.execute(SQLITE_SEARCH, [expression, ranked, count])
        return self.cursor.fetchall()


class PostgresBackend:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.idf: dict[str, float] = {}

    def counts(self, terms: list[str], bound: int) -> list[int]:
        self.cursor.execute(POSTGRES_COUNTS, [terms])
        counted = dict(self.cursor.fetchall())
        self.cursor.execute(POSTGRES_TOTAL)
        total = self.cursor.fetchone()[0]
        found = [counted.get(term, 0) for term in terms]
        self.idf = {term: bm25_idf(total, n) for term, n in zip(terms, found, strict=True)}
        return [min(n, bound) for n in found]

    def search(self, terms: list[str], operator: str, *, ranked: int, count: int) -> list[Row]:
        lexemes = {term: f"'{term}'" for term in terms}
        weighted = [
            value
            for term in terms
            for value in (self.idf[term], f"{lexemes[term]}:A", f"{lexemes[term]}:B", f"{lexemes[term]}:D")
        ]
        sql = POSTGRES_SEARCH.format(ranks=" + ".join([POSTGRES_TERM_RANK] * len(terms)))
        matching = (" & " if operator == "and" else " | ").join(lexemes.values())
        self.cursor.execute(sql, [*weighted, matching, ranked, " | ".join(lexemes.values()), count])
        return self.cursor.fetchall()
