"""The statements of a conversation search on PostgreSQL (full-text; `chat.search_sql` says what
each answers)."""

from __future__ import annotations

import math
import time
from typing import Any

from chat.search_sql import TITLES_RANKED, Match, Statements, Wanted, owner_filter, words_marked
from knowledge.fulltext import bm25_idf

# Each word counted up to the bound, in one statement (a round trip costs more than a rare word's
# count on a busy machine).
POSTGRES_COUNTS = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM chat_message WHERE search @@ to_tsquery('english', u.q) LIMIT %s) s)
FROM unnest(%s::text[]) WITH ORDINALITY AS u(q, n)
ORDER BY u.n
"""
# Counting a common word reads up to the bound's rows from the table (a GIN index cannot count
# alone): 6 ms a word at 200,000 messages. The planner's statistics already know the common words
# (migration 0005 keeps 10,000 of them, down to about 1 message in 3,000): a word listed there is
# weighed by its listed frequency, and only the others, rare, are counted. Reading the list takes
# 12 ms (its text is parsed), so a process keeps it (`Frequencies`) until the next ANALYZE.
POSTGRES_ANALYSED = """
SELECT greatest(last_analyze, last_autoanalyze) FROM pg_stat_user_tables WHERE relid = 'chat_message'::regclass
"""
POSTGRES_FREQUENCIES = """
SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats
WHERE schemaname = current_schema() AND tablename = 'chat_message' AND attname = 'search'
"""
# Each term's lexemes (a word the stemmer splits, `foo_bar`, has two; a stopword none), and how
# many messages there are, near enough for a word's weight and read from the primary key's index
# at once (count(*) would read every row).
POSTGRES_LEXEMES = """
SELECT t.term, x.lexeme, (SELECT coalesce(max(id), 1) FROM chat_message)
FROM unnest(%s::text[]) AS t(term)
LEFT JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', t.term))) AS x(lexeme) ON true
"""
# Each message carries its conversation and owner, and the GIN index the owner (migration 0008):
# one user's matches are found in the index, and none is joined to its turn and conversation.
_POSTGRES_OWNED = "AND search_owner_id = %s"
# ts_rank knows no inverse document frequency: each query word a message holds adds the word's
# IDF (as BM25 does for short texts); ts_rank only breaks ties.
POSTGRES_TERM = "%s * (m.search @@ to_tsquery('english', %s))::int"
POSTGRES_MESSAGES_RANKED = """
SELECT DISTINCT ON (m.search_conversation_id) m.search_conversation_id, m.id,
       {ranks} + 0.01 * ts_rank(m.search, q) AS rank
FROM (SELECT id, search_conversation_id, search FROM chat_message
      WHERE search @@ to_tsquery('english', %s) {owned} LIMIT %s) m,
     to_tsquery('english', %s) AS q
ORDER BY m.search_conversation_id, rank DESC
"""
# Common words only: a GIN index has no order to stop early in, and finding every message that
# holds them read 10,000 rows (60 ms); walking the newest messages for the caller's own read
# 20,000. So the messages of the caller's POSTGRES_RECENT most recently active conversations are
# searched instead (the one looked for is most often recent), read by their conversation:
# `IS TRUE` keeps the planner from the GIN index (it would find every match first).
POSTGRES_RECENT = 50
POSTGRES_MESSAGES_NEWEST = """
SELECT DISTINCT ON (m.search_conversation_id) m.search_conversation_id, m.id, ts_rank(m.search, q) AS rank
FROM (SELECT id FROM chat_conversation {owned} ORDER BY updated_at DESC LIMIT %s) recent
JOIN chat_message m ON m.search_conversation_id = recent.id,
     to_tsquery('english', %s) AS q
WHERE (m.search @@ q) IS TRUE
ORDER BY m.search_conversation_id, rank DESC
"""
# Titles weigh their words as messages do, so the two ranks add up on one scale.
POSTGRES_TITLE_TERM = "%s * (c.search @@ to_tsquery('english', %s))::int"
POSTGRES_TITLES = """
SELECT c.id, {ranks} + 0.01 * ts_rank(c.search, q) AS rank
FROM (SELECT id FROM chat_conversation WHERE search @@ to_tsquery('english', %s) {owned_inner} LIMIT %s) hit
JOIN chat_conversation c ON c.id = hit.id, to_tsquery('english', %s) AS q
ORDER BY rank DESC
LIMIT %s
"""
# ts_headline parses the whole text: a long tool result is cut first, to keep a search quick.
POSTGRES_MESSAGE_SNIPPETS = """
SELECT id, ts_headline('english', left(CASE WHEN kind = 'tool' THEN content || ': ' || coalesce(tool_result, '')
                                            ELSE content END, 20000),
                       to_tsquery('english', %s),
                       'StartSel=**, StopSel=**, MaxWords=24, MinWords=8, MaxFragments=1, FragmentDelimiter=…')
FROM chat_message WHERE id = ANY(%s)
"""
POSTGRES_TITLE_SNIPPETS = """
SELECT id, ts_headline('english', title, to_tsquery('english', %s), 'HighlightAll=true, StartSel=**, StopSel=**')
FROM chat_conversation WHERE id = ANY(%s)
"""


def _tsquery(terms: list[str], every: bool) -> str:
    return (" & " if every else " | ").join(f"'{term}'" for term in terms)


class Frequencies:
    """The common words of the messages and the share of messages holding each, as PostgreSQL's
    statistics have them; read again when they may have changed (an ANALYZE since, looked for
    at most every CHECK_SECONDS)."""

    CHECK_SECONDS = 60.0

    def __init__(self) -> None:
        self._words: dict[str, float] = {}
        self._analysed: Any = None
        self._checked = -math.inf

    def words(self, cursor: Any) -> dict[str, float]:
        if time.monotonic() - self._checked < self.CHECK_SECONDS:
            return self._words
        self._checked = time.monotonic()
        cursor.execute(POSTGRES_ANALYSED)
        row = cursor.fetchone()
        analysed = row[0] if row else None
        if analysed != self._analysed:
            cursor.execute(POSTGRES_FREQUENCIES)
            row = cursor.fetchone()
            self._words = dict(zip(row[0], row[1], strict=False)) if row and row[0] else {}
            self._analysed = analysed
        return self._words


# Per process, as the planner's statistics are per database: one list for every search.
frequencies = Frequencies()


class PostgresBackend(Statements):
    # Both ranks are sums of the same words' weights: a title's words count as a message's
    # (twice made a common title word outrank a message holding every word of the query).
    title_weight = 1.0

    def counts(self, terms: list[str], bound: int) -> list[int]:
        common = frequencies.words(self.cursor)
        self.cursor.execute(POSTGRES_LEXEMES, [terms])
        rows = self.cursor.fetchall()
        total = rows[0][2] if rows else 1
        listed: dict[str, float] = {}
        for term, lexeme, _ in rows:
            if lexeme is None:
                # A stopword of the `english` configuration ("before", "very"): in no message's
                # index, and dropped from any query; counted as common, it is not searched alone.
                listed[term] = 1.0
            elif lexeme in common:
                listed[term] = min(listed.get(term, 1.0), common[lexeme])
        rare = [term for term in terms if term not in listed]  # (or never analysed): counted
        counted: dict[str, int] = {}
        if rare:
            self.cursor.execute(POSTGRES_COUNTS, [bound, [f"'{term}'" for term in rare]])
            counted = dict(zip(rare, (n for (n,) in self.cursor.fetchall()), strict=True))
        found = [counted[term] if term in counted else round(listed[term] * total) for term in terms]
        self.idf = {term: bm25_idf(total, n) for term, n in zip(terms, found, strict=True)}
        return [min(n, bound) for n in found]

    def messages(self, wanted: Wanted) -> list[Match]:
        query = _tsquery(wanted.terms, wanted.every)
        if wanted.newest:
            recent, mine = owner_filter("WHERE owner_id = %s", wanted.owner_id)
            sql, params = POSTGRES_MESSAGES_NEWEST.format(owned=recent), [*mine, POSTGRES_RECENT, query]
        else:
            owned, mine = owner_filter(_POSTGRES_OWNED, wanted.owner_id)
            scored = [*wanted.terms, *wanted.also]
            sql = POSTGRES_MESSAGES_RANKED.format(ranks=self._ranks(POSTGRES_TERM, scored), owned=owned)
            params = [*self._weights(scored), query, *mine, wanted.ranked, _tsquery(scored, every=False)]
        self.cursor.execute(sql, params)
        return [
            (conversation_id, message_id, float(rank)) for conversation_id, message_id, rank in self.cursor.fetchall()
        ]

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        owned, mine = owner_filter("AND owner_id = %s", owner_id)
        sql = POSTGRES_TITLES.format(ranks=self._ranks(POSTGRES_TITLE_TERM, terms), owned_inner=owned)
        query = _tsquery(terms, every)
        self.cursor.execute(sql, [*self._weights(terms), query, *mine, TITLES_RANKED, query, limit])
        return [(conversation_id, float(rank)) for conversation_id, rank in self.cursor.fetchall()]

    @staticmethod
    def _ranks(term: str, terms: list[str]) -> str:
        return "(" + " + ".join([term] * len(terms)) + ")"

    def _weights(self, terms: list[str]) -> list[Any]:
        return [value for term in terms for value in (self.idf.get(term, 1.0), f"'{term}'")]

    def snippets(self, terms: list[str], matches: list[Match]) -> dict[str, str]:
        found = super().snippets(terms, matches)
        # ts_headline parses the text as it is, where a word inside a file name or a path
        # (`notes-2024.csv`) is no word of its own (the index splits them: migration 0003).
        return {key: text if "**" in text else words_marked(text, terms) for key, text in found.items()}

    def message_snippets(self, terms: list[str], message_ids: list[int]) -> list[tuple[int, str]]:
        self.cursor.execute(POSTGRES_MESSAGE_SNIPPETS, [_tsquery(terms, every=False), message_ids])
        return self.cursor.fetchall()

    def title_snippets(self, terms: list[str], conversation_ids: list[str]) -> list[tuple[str, str]]:
        self.cursor.execute(POSTGRES_TITLE_SNIPPETS, [_tsquery(terms, every=False), conversation_ids])
        return self.cursor.fetchall()
