"""The statements a conversation search runs, in each database's dialect (`chat.search` has the
plan; migration 0003 made the indexes).

Terms hold only letters, digits and '_' (`chat.search.search_terms`): they are quoted as phrases
(FTS5) or lexemes (tsquery), so no query syntax reaches the database; every value is a
parameter. Ranks are "higher is better" on both backends (FTS5's BM25 is negated).
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

# (conversation id, message id or None, rank): a conversation's best match among messages or
# titles.
Match = tuple[str, int | None, float]
_WORD = re.compile(r"\w+")

# Snippets mark the matched words in Markdown bold (`**`), as the frontend renders messages: the
# snippet is text, never HTML; a cut is marked `…`; about 16 words (FTS5 tokens, ts_headline).

SQLITE_COUNT = "SELECT count(*) FROM (SELECT 1 FROM chat_message_fts WHERE chat_message_fts MATCH %s LIMIT %s)"
_SQLITE_OWNED = "JOIN chat_conversation c ON c.id = t.conversation_id AND c.owner_id = %s"
# Rare terms: every match ranked (their number is bounded by the counts). Common terms only: the
# newest matches (FTS5 walks its rowids backwards), the caller's own found before the LIMIT.
SQLITE_MESSAGES_RANKED = """
SELECT t.conversation_id, f.rowid, min(f.rank)
FROM (SELECT rowid, rank FROM chat_message_fts WHERE chat_message_fts MATCH %s ORDER BY rank LIMIT %s) f
JOIN chat_message m ON m.id = f.rowid
JOIN chat_turn t ON t.id = m.turn_id
{owned}
GROUP BY t.conversation_id
"""
SQLITE_MESSAGES_NEWEST = """
SELECT conversation_id, rowid, min(rank) FROM (
    SELECT t.conversation_id, f.rowid, f.rank
    FROM chat_message_fts f
    JOIN chat_message m ON m.id = f.rowid
    JOIN chat_turn t ON t.id = m.turn_id
    {owned}
    WHERE chat_message_fts MATCH %s
    ORDER BY f.rowid DESC
    LIMIT %s
)
GROUP BY conversation_id
"""
SQLITE_TITLES = """
SELECT k.conversation_id, f.rank
FROM chat_conversation_fts f
JOIN chat_conversation_search_key k ON k.id = f.rowid
{owned}
WHERE chat_conversation_fts MATCH %s
ORDER BY f.rank
LIMIT %s
"""
_SQLITE_TITLE_OWNED = "JOIN chat_conversation c ON c.id = k.conversation_id AND c.owner_id = %s"
SQLITE_MESSAGE_SNIPPET = """
SELECT snippet(chat_message_fts, -1, '**', '**', '…', 16)
FROM chat_message_fts WHERE chat_message_fts MATCH %s AND rowid = %s
"""
SQLITE_TITLE_SNIPPET = """
SELECT highlight(chat_conversation_fts, 0, '**', '**')
FROM chat_conversation_fts
WHERE chat_conversation_fts MATCH %s
  AND rowid = (SELECT id FROM chat_conversation_search_key WHERE conversation_id = %s)
"""

POSTGRES_COUNT = (
    "(SELECT count(*) FROM (SELECT 1 FROM chat_message WHERE search @@ to_tsquery('english', %s) LIMIT %s) s)"
)
# How many messages there are, near enough for a word's weight and read from the primary key's
# index at once (count(*) would read every row; the planner's estimate lags behind inserts).
POSTGRES_TOTAL = "(SELECT coalesce(max(id), 1) FROM chat_message)"
_POSTGRES_OWNED = "AND c.owner_id = %s"
# ts_rank knows no inverse document frequency: each query word a message holds adds the word's
# IDF (as BM25 does for short texts); ts_rank only breaks ties.
POSTGRES_TERM = "%s * (m.search @@ to_tsquery('english', %s))::int"
POSTGRES_MESSAGES_RANKED = """
SELECT DISTINCT ON (t.conversation_id) t.conversation_id, m.id, {ranks} + 0.01 * ts_rank(m.search, q) AS rank
FROM (SELECT id FROM chat_message WHERE search @@ to_tsquery('english', %s) LIMIT %s) hit
JOIN chat_message m ON m.id = hit.id
JOIN chat_turn t ON t.id = m.turn_id
JOIN chat_conversation c ON c.id = t.conversation_id {owned},
     to_tsquery('english', %s) AS q
ORDER BY t.conversation_id, rank DESC
"""
POSTGRES_MESSAGES_NEWEST = """
SELECT DISTINCT ON (conversation_id) conversation_id, id, rank FROM (
    SELECT t.conversation_id, m.id, ts_rank(m.search, q) AS rank
    FROM chat_message m
    JOIN chat_turn t ON t.id = m.turn_id
    JOIN chat_conversation c ON c.id = t.conversation_id {owned},
         to_tsquery('english', %s) AS q
    WHERE m.search @@ q
    ORDER BY m.id DESC
    LIMIT %s
) newest
ORDER BY conversation_id, rank DESC
"""
# Titles weigh their words as messages do, so the two ranks add up on one scale.
POSTGRES_TITLE_TERM = "%s * (c.search @@ to_tsquery('english', %s))::int"
POSTGRES_TITLES = """
SELECT c.id, {ranks} + 0.01 * ts_rank(c.search, q) AS rank
FROM chat_conversation c, to_tsquery('english', %s) AS q
WHERE c.search @@ q {owned}
ORDER BY rank DESC
LIMIT %s
"""
# ts_headline parses the whole text: a long tool result is cut first, to keep a search quick.
POSTGRES_MESSAGE_SNIPPET = """
SELECT ts_headline('english', left(CASE WHEN kind = 'tool' THEN content || ': ' || coalesce(tool_result, '')
                                        ELSE content END, 20000),
                   to_tsquery('english', %s),
                   'StartSel=**, StopSel=**, MaxWords=24, MinWords=8, MaxFragments=1, FragmentDelimiter=…')
FROM chat_message WHERE id = %s
"""
POSTGRES_TITLE_SNIPPET = """
SELECT ts_headline('english', title, to_tsquery('english', %s), 'HighlightAll=true, StartSel=**, StopSel=**')
FROM chat_conversation WHERE id = %s
"""


class Backend(Protocol):
    def counts(self, terms: list[str], bound: int) -> list[int]:
        """How many messages hold each term, counted up to `bound`."""

    def messages(
        self, terms: list[str], *, every: bool, newest: bool, owner_id: int | None, ranked: int
    ) -> list[Match]:
        """Each conversation's best matching message, among those holding every term (`every`)
        or any. `newest`: only the newest `ranked` matches are ranked; else `ranked` bounds the
        matches, and the caller knows there are fewer."""

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        """Conversations whose title matches, best first."""

    def snippet(self, terms: list[str], *, conversation_id: str, message_id: int | None) -> str:
        """The matching passage of the message (or of the title, without one), words marked."""


def words_marked(text: str, terms: list[str], width: int = 16) -> str:
    """About `width` words of `text` around the first that holds a word starting like a term (as
    a stem would), each such word marked `**`."""
    prefixes = tuple(term[:5] for term in terms)

    def mark(word: re.Match[str]) -> str:
        return f"**{word[0]}**" if word[0].lower().startswith(prefixes) else word[0]

    words = text.split()
    first = next(
        (index for index, word in enumerate(words) if any(mark(part) != part[0] for part in _WORD.finditer(word))),
        0,
    )
    start = max(0, first - width // 3)
    shown = _WORD.sub(mark, " ".join(words[start : start + width]))
    return ("… " if start else "") + shown + (" …" if start + width < len(words) else "")


def _fts5(terms: list[str], every: bool) -> str:
    return (" AND " if every else " OR ").join(f'"{term}"' for term in terms)


def _tsquery(terms: list[str], every: bool) -> str:
    return (" & " if every else " | ").join(f"'{term}'" for term in terms)


class SqliteBackend:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def counts(self, terms: list[str], bound: int) -> list[int]:
        found = []
        for term in terms:
            self.cursor.execute(SQLITE_COUNT, [f'"{term}"', bound])
            found.append(self.cursor.fetchone()[0])
        return found

    def messages(
        self, terms: list[str], *, every: bool, newest: bool, owner_id: int | None, ranked: int
    ) -> list[Match]:
        owned = _SQLITE_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        if newest:
            sql, params = SQLITE_MESSAGES_NEWEST.format(owned=owned), [*mine, _fts5(terms, every), ranked]
        else:
            sql, params = SQLITE_MESSAGES_RANKED.format(owned=owned), [_fts5(terms, every), ranked, *mine]
        self.cursor.execute(sql, params)
        return [(conversation_id, message_id, -rank) for conversation_id, message_id, rank in self.cursor.fetchall()]

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        owned = _SQLITE_TITLE_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        self.cursor.execute(SQLITE_TITLES.format(owned=owned), [*mine, _fts5(terms, every), limit])
        return [(conversation_id, -rank) for conversation_id, rank in self.cursor.fetchall()]

    def snippet(self, terms: list[str], *, conversation_id: str, message_id: int | None) -> str:
        expression = _fts5(terms, every=False)
        if message_id is None:
            self.cursor.execute(SQLITE_TITLE_SNIPPET, [expression, conversation_id])
        else:
            self.cursor.execute(SQLITE_MESSAGE_SNIPPET, [expression, message_id])
        row = self.cursor.fetchone()
        return row[0] if row else ""


class PostgresBackend:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.idf: dict[str, float] = {}

    def counts(self, terms: list[str], bound: int) -> list[int]:
        lexemes = [value for term in terms for value in (f"'{term}'", bound)]
        self.cursor.execute(f"SELECT {POSTGRES_TOTAL}, {', '.join([POSTGRES_COUNT] * len(terms))}", lexemes)
        total, *found = self.cursor.fetchone()
        total = max(total, *found)  # so no weight is negative
        self.idf = {
            term: math.log(1 + (float(total) - n + 0.5) / (n + 0.5)) for term, n in zip(terms, found, strict=True)
        }
        return found

    def messages(
        self, terms: list[str], *, every: bool, newest: bool, owner_id: int | None, ranked: int
    ) -> list[Match]:
        owned = _POSTGRES_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        query = _tsquery(terms, every)
        if newest:
            sql, params = POSTGRES_MESSAGES_NEWEST.format(owned=owned), [*mine, query, ranked]
        else:
            sql = POSTGRES_MESSAGES_RANKED.format(ranks=self._ranks(POSTGRES_TERM, terms), owned=owned)
            params = [*self._weights(terms), query, ranked, *mine, query]
        self.cursor.execute(sql, params)
        return [
            (conversation_id, message_id, float(rank)) for conversation_id, message_id, rank in self.cursor.fetchall()
        ]

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        owned = _POSTGRES_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        sql = POSTGRES_TITLES.format(ranks=self._ranks(POSTGRES_TITLE_TERM, terms), owned=owned)
        self.cursor.execute(sql, [*self._weights(terms), _tsquery(terms, every), *mine, limit])
        return [(conversation_id, float(rank)) for conversation_id, rank in self.cursor.fetchall()]

    @staticmethod
    def _ranks(term: str, terms: list[str]) -> str:
        return "(" + " + ".join([term] * len(terms)) + ")"

    def _weights(self, terms: list[str]) -> list[Any]:
        return [value for term in terms for value in (self.idf.get(term, 1.0), f"'{term}'")]

    def snippet(self, terms: list[str], *, conversation_id: str, message_id: int | None) -> str:
        query = _tsquery(terms, every=False)
        if message_id is None:
            self.cursor.execute(POSTGRES_TITLE_SNIPPET, [query, conversation_id])
        else:
            self.cursor.execute(POSTGRES_MESSAGE_SNIPPET, [query, message_id])
        row = self.cursor.fetchone()
        text = row[0] if row else ""
        # ts_headline parses the text as it is, where a word inside a file name or a path
        # (`notes-2024.csv`) is no word of its own (the index splits them: migration 0003).
        return text if "**" in text else words_marked(text, terms)
