"""The statements a conversation search runs, in each database's dialect (`chat.search` has the
plan; migration 0003 made the indexes).

Terms hold only letters, digits and '_' (`chat.search.search_terms`): they are quoted as phrases
(FTS5) or lexemes (tsquery), so no query syntax reaches the database; every value is a
parameter. Ranks are "higher is better" on both backends (FTS5's BM25 is negated).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Protocol

# (conversation id, message id or None, rank): a conversation's best match among messages or
# titles.
Match = tuple[str, int | None, float]
# Titles ranked at most (a common word is in thousands of them; the messages decide then).
TITLES_RANKED = 1000
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
FROM (SELECT rowid, rank FROM chat_conversation_fts WHERE chat_conversation_fts MATCH %s LIMIT %s) f
JOIN chat_conversation_search_key k ON k.id = f.rowid
{owned}
ORDER BY f.rank
LIMIT %s
"""
_SQLITE_TITLE_OWNED = "JOIN chat_conversation c ON c.id = k.conversation_id AND c.owner_id = %s"
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

POSTGRES_COUNT = (
    "SELECT count(*) FROM (SELECT 1 FROM chat_message WHERE search @@ to_tsquery('english', %s) LIMIT %s) s"
)
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
# Each term's lexemes (a word the stemmer splits, `foo_bar`, has two; a stopword none).
POSTGRES_LEXEMES = """
SELECT t.term, x.lexeme
FROM unnest(%s::text[]) AS t(term), unnest(tsvector_to_array(to_tsvector('english', t.term))) AS x(lexeme)
"""
# How many messages there are, near enough for a word's weight and read from the primary key's
# index at once (count(*) would read every row).
POSTGRES_TOTAL = "SELECT coalesce(max(id), 1) FROM chat_message"
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


class Backend(Protocol):
    # What a title's rank counts for beside a message's.
    title_weight: float

    def counts(self, terms: list[str], bound: int) -> list[int]:
        """How many messages hold each term, counted up to `bound`."""

    def messages(
        self,
        terms: list[str],
        *,
        every: bool,
        newest: bool,
        owner_id: int | None,
        ranked: int,
        also: tuple[str, ...] = (),
    ) -> list[Match]:
        """Each conversation's best matching message, among those holding every term (`every`)
        or any. `newest`: only the newest `ranked` matches are ranked; else `ranked` bounds the
        matches, and the caller knows there are fewer. Words `also` count in the ranking only."""

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        """Conversations whose title matches, best first."""

    def snippets(self, terms: list[str], matches: list[Match]) -> dict[str, str]:
        """By conversation, the matching passage of its message (or of its title, without
        one), the words marked."""


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
    # BM25 of a short title is about a message's: twice, as a title names the whole conversation.
    title_weight = 2.0

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def counts(self, terms: list[str], bound: int) -> list[int]:
        found = []
        for term in terms:
            self.cursor.execute(SQLITE_COUNT, [f'"{term}"', bound])
            found.append(self.cursor.fetchone()[0])
        return found

    def messages(
        self,
        terms: list[str],
        *,
        every: bool,
        newest: bool,
        owner_id: int | None,
        ranked: int,
        also: tuple[str, ...] = (),
    ) -> list[Match]:
        owned = _SQLITE_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        expression = _fts5(terms, every)
        if also:  # BM25 scores every phrase of the expression: these add to it, never select
            expression = f"({expression}) AND ({_fts5([*terms, *also], every=False)})"
        if newest:
            sql, params = SQLITE_MESSAGES_NEWEST.format(owned=owned), [*mine, expression, ranked]
        else:
            sql, params = SQLITE_MESSAGES_RANKED.format(owned=owned), [expression, ranked, *mine]
        self.cursor.execute(sql, params)
        return [(conversation_id, message_id, -rank) for conversation_id, message_id, rank in self.cursor.fetchall()]

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        owned = _SQLITE_TITLE_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        self.cursor.execute(SQLITE_TITLES.format(owned=owned), [_fts5(terms, every), TITLES_RANKED, *mine, limit])
        return [(conversation_id, -rank) for conversation_id, rank in self.cursor.fetchall()]

    def snippets(self, terms: list[str], matches: list[Match]) -> dict[str, str]:
        expression = _fts5(terms, every=False)
        by_message = {message_id: key for key, message_id, _ in matches if message_id is not None}
        titled = [key for key, message_id, _ in matches if message_id is None]
        found: dict[str, str] = {}
        if by_message:
            sql = SQLITE_MESSAGE_SNIPPETS.format(ids=", ".join(["%s"] * len(by_message)))
            self.cursor.execute(sql, [expression, *by_message])
            found |= {by_message[message_id]: text for message_id, text in self.cursor.fetchall()}
        if titled:
            sql = SQLITE_TITLE_SNIPPETS.format(ids=", ".join(["%s"] * len(titled)))
            self.cursor.execute(sql, [expression, *titled])
            found |= dict(self.cursor.fetchall())
        return found


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


class PostgresBackend:
    # Both ranks are sums of the same words' weights: a title's words count as a message's
    # (twice made a common title word outrank a message holding every word of the query).
    title_weight = 1.0

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.idf: dict[str, float] = {}

    def counts(self, terms: list[str], bound: int) -> list[int]:
        self.cursor.execute(POSTGRES_TOTAL)
        total = self.cursor.fetchone()[0]
        common = frequencies.words(self.cursor)
        self.cursor.execute(POSTGRES_LEXEMES, [terms])
        lexemes: dict[str, list[str]] = {}
        for term, lexeme in self.cursor.fetchall():
            lexemes.setdefault(term, []).append(lexeme)
        found = []
        for term in terms:
            listed = [common[lexeme] for lexeme in lexemes.get(term, []) if lexeme in common]
            if listed:
                found.append(round(min(listed) * total))
            else:  # rare (or never analysed): counted, up to the bound
                self.cursor.execute(POSTGRES_COUNT, [f"'{term}'", bound])
                found.append(self.cursor.fetchone()[0])
        total = max(total, *found)  # so no weight is negative
        # BM25's IDF.
        self.idf = {
            term: math.log(1 + (float(total) - n + 0.5) / (n + 0.5)) for term, n in zip(terms, found, strict=True)
        }
        return [min(n, bound) for n in found]

    def messages(
        self,
        terms: list[str],
        *,
        every: bool,
        newest: bool,
        owner_id: int | None,
        ranked: int,
        also: tuple[str, ...] = (),
    ) -> list[Match]:
        owned = _POSTGRES_OWNED if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
        query = _tsquery(terms, every)
        if newest:
            sql, params = POSTGRES_MESSAGES_NEWEST.format(owned=owned), [*mine, query, ranked]
        else:
            scored = [*terms, *also]
            sql = POSTGRES_MESSAGES_RANKED.format(ranks=self._ranks(POSTGRES_TERM, scored), owned=owned)
            params = [*self._weights(scored), query, ranked, *mine, _tsquery(scored, every=False)]
        self.cursor.execute(sql, params)
        return [
            (conversation_id, message_id, float(rank)) for conversation_id, message_id, rank in self.cursor.fetchall()
        ]

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        owned = "AND owner_id = %s" if owner_id is not None else ""
        mine = [owner_id] if owner_id is not None else []
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
        query = _tsquery(terms, every=False)
        by_message = {message_id: key for key, message_id, _ in matches if message_id is not None}
        titled = [key for key, message_id, _ in matches if message_id is None]
        found: dict[str, str] = {}
        if by_message:
            self.cursor.execute(POSTGRES_MESSAGE_SNIPPETS, [query, list(by_message)])
            found |= {by_message[message_id]: text for message_id, text in self.cursor.fetchall()}
        if titled:
            self.cursor.execute(POSTGRES_TITLE_SNIPPETS, [query, titled])
            found |= dict(self.cursor.fetchall())
        # ts_headline parses the text as it is, where a word inside a file name or a path
        # (`notes-2024.csv`) is no word of its own (the index splits them: migration 0003).
        return {key: text if "**" in text else words_marked(text, terms) for key, text in found.items()}
