"""The statements of a conversation search on SQLite (FTS5; `chat.search_sql` says what each
answers)."""

from __future__ import annotations

from chat.search_sql import TITLES_RANKED, Match, Statements, Wanted, owner_filter
from knowledge.fulltext import bm25_idf, fts5_counts

# A match's conversation and owner come from the search's own keys (migration 0006): reading the
# message, its turn and its conversation cost 3 µs a match.
_SQLITE_OWNED = "AND k.owner_id = %s"
# FTS5's bm25() first counts the messages holding each word of the expression: 6 ms for a word in
# a third of them. So it ranks the rare words only (counted up to the bound); the common words'
# part is added to the ranks afterwards, from which of the matches hold them (SQLITE_HOLDING).
SQLITE_MESSAGES_RANKED = """
SELECT k.conversation_id, f.rowid, f.rank
FROM (SELECT rowid, rank FROM chat_message_fts WHERE chat_message_fts MATCH %s ORDER BY rank LIMIT %s) f
JOIN chat_message_search_key m ON m.id = f.rowid
JOIN chat_conversation_search_key k ON k.id = m.conversation {owned}
"""
SQLITE_HOLDING = "SELECT rowid FROM chat_message_fts WHERE chat_message_fts MATCH %s"
# Common words only: the newest matches (FTS5 walks its rowids backwards), the caller's own found
# before the LIMIT, with their length: bm25() would first count every message holding the words.
SQLITE_MESSAGES_NEWEST = """
SELECT n.conversation_id, n.rowid, length(m.content) + coalesce(length(m.tool_result), 0)
FROM (
    SELECT k.conversation_id, f.rowid
    FROM chat_message_fts f
    JOIN chat_message_search_key m ON m.id = f.rowid
    JOIN chat_conversation_search_key k ON k.id = m.conversation {owned}
    WHERE chat_message_fts MATCH %s
    ORDER BY f.rowid DESC
    LIMIT %s
) n
JOIN chat_message m ON m.id = n.rowid
"""
# BM25's parameters, and a message's usual length in characters (for its length normalisation).
K1, B, AVERAGE_CHARS = 1.2, 0.75, 400
SQLITE_TOTAL = "SELECT coalesce(max(id), 1) FROM chat_message"
SQLITE_TITLES = """
SELECT k.conversation_id, f.rank
FROM (SELECT rowid, rank FROM chat_conversation_fts WHERE chat_conversation_fts MATCH %s LIMIT %s) f
JOIN chat_conversation_search_key k ON k.id = f.rowid {owned}
ORDER BY f.rank
LIMIT %s
"""
SQLITE_MESSAGE_SNIPPETS = """
SELECT rowid, snippet(chat_message_fts, -1, '**', '**', '…', 16)
FROM chat_message_fts WHERE chat_message_fts MATCH %s AND rowid IN ({ids})
"""
SQLITE_TITLE_SNIPPETS = """
SELECT k.conversation_id, highlight(chat_conversation_fts, 0, '**', '**')
FROM chat_conversation_fts f
JOIN chat_conversation_search_key k ON k.id = f.rowid
WHERE chat_conversation_fts MATCH %s
  AND f.rowid IN (SELECT id FROM chat_conversation_search_key WHERE conversation_id IN ({ids}))
"""


def _fts5(terms: list[str], every: bool) -> str:
    return (" AND " if every else " OR ").join(f'"{term}"' for term in terms)


class SqliteBackend(Statements):
    # BM25 of a short title is about a message's: twice, as a title names the whole conversation.
    title_weight = 2.0

    def counts(self, terms: list[str], bound: int) -> list[int]:
        found = fts5_counts(self.cursor, "chat_message_fts", terms, bound)
        self.cursor.execute(SQLITE_TOTAL)
        total = self.cursor.fetchone()[0]
        # A common word counted up to the bound weighs as if in `bound` messages: more than it
        # would in BM25, which only reorders the rare words' matches by it.
        self.idf = {term: bm25_idf(total, n) for term, n in zip(terms, found, strict=True)}
        return found

    def messages(self, wanted: Wanted) -> list[Match]:
        owned, mine = owner_filter(_SQLITE_OWNED, wanted.owner_id)
        expression, ranked = _fts5(wanted.terms, wanted.every), wanted.ranked
        if wanted.newest:
            self.cursor.execute(SQLITE_MESSAGES_NEWEST.format(owned=owned), [*mine, expression, ranked])
            # BM25 of a message holding each word once: the shorter, the better.
            weight = sum(self.idf.get(term, 1.0) for term in wanted.terms) * (K1 + 1)
            rows = [
                (key, message_id, -weight / (1 + K1 * (1 - B + B * chars / AVERAGE_CHARS)))
                for key, message_id, chars in self.cursor.fetchall()
            ]
        else:
            self.cursor.execute(SQLITE_MESSAGES_RANKED.format(owned=owned), [expression, ranked, *mine])
            rows = self.cursor.fetchall()
        bonus: dict[int, float] = {}
        for word in wanted.also if rows else ():
            self.cursor.execute(SQLITE_HOLDING, [f'({expression}) AND "{word}"'])
            for (message_id,) in self.cursor.fetchall():
                bonus[message_id] = bonus.get(message_id, 0.0) + self.idf.get(word, 1.0)
        best: dict[str, Match] = {}
        for key, message_id, rank in rows:
            score = bonus.get(message_id, 0.0) - rank  # FTS5's rank is lower-is-better
            if key not in best or score > best[key][2]:
                best[key] = (key, message_id, score)
        return list(best.values())

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        owned, mine = owner_filter(_SQLITE_OWNED, owner_id)
        self.cursor.execute(SQLITE_TITLES.format(owned=owned), [_fts5(terms, every), TITLES_RANKED, *mine, limit])
        return [(conversation_id, -rank) for conversation_id, rank in self.cursor.fetchall()]

    def message_snippets(self, terms: list[str], message_ids: list[int]) -> list[tuple[int, str]]:
        sql = SQLITE_MESSAGE_SNIPPETS.format(ids=", ".join(["%s"] * len(message_ids)))
        self.cursor.execute(sql, [_fts5(terms, every=False), *message_ids])
        return self.cursor.fetchall()

    def title_snippets(self, terms: list[str], conversation_ids: list[str]) -> list[tuple[str, str]]:
        sql = SQLITE_TITLE_SNIPPETS.format(ids=", ".join(["%s"] * len(conversation_ids)))
        self.cursor.execute(sql, [_fts5(terms, every=False), *conversation_ids])
        return self.cursor.fetchall()
