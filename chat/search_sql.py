"""What a conversation search asks of a database (`chat.search` has the plan): each database's
statements are in `chat.search_sqlite` and `chat.search_postgres` (migrations 0003, 0006, 0008 and
0009 made the indexes).

Terms hold only letters, digits and '_' (`chat.search.search_terms`): they are quoted as phrases
(FTS5) or lexemes (tsquery), so no query syntax reaches the database; every value is a
parameter. Ranks are "higher is better" on both backends (FTS5's BM25 is negated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

# (conversation id, message id or None, rank): a conversation's best match among messages or
# titles.
Match = tuple[str, int | None, float]
# Titles ranked at most (a common word is in thousands of them; the messages decide then).
TITLES_RANKED = 1000
_WORD = re.compile(r"\w+")

# Snippets mark the matched words in Markdown bold (`**`), as the frontend renders messages: the
# snippet is text, never HTML; a cut is marked `…`; about 16 words (FTS5 tokens, ts_headline).


@dataclass(frozen=True, kw_only=True)
class Wanted:
    """Which messages a search ranks: those holding every term (`every`) or any, of the owner's
    conversations (all with None). `newest`: only the newest matches are ranked (`ranked` of
    them, SQLite; those of the owner's newest conversations, PostgreSQL); else `ranked` bounds the
    matches, and the caller knows there are fewer. Words `also` count in the ranking only."""

    terms: list[str]
    every: bool
    newest: bool
    owner_id: int | None
    ranked: int
    also: tuple[str, ...] = ()


class Backend(Protocol):
    # What a title's rank counts for beside a message's.
    title_weight: float

    def counts(self, terms: list[str], bound: int) -> list[int]:
        """How many messages hold each term, counted up to `bound`."""

    def messages(self, wanted: Wanted) -> list[Match]:
        """Each conversation's best matching message (see `Wanted`)."""

    def titles(self, terms: list[str], *, every: bool, owner_id: int | None, limit: int) -> list[tuple[str, float]]:
        """Conversations whose title matches, best first."""

    def snippets(self, terms: list[str], matches: list[Match]) -> dict[str, str]:
        """By conversation, the matching passage of its message (or of its title, without
        one), the words marked."""


def owner_filter(condition: str, owner_id: int | None) -> tuple[str, list[int]]:
    """A statement's owner condition (`condition`, one %s) and its parameter; none without owner."""
    return (condition, [owner_id]) if owner_id is not None else ("", [])


class Statements:
    """What both backends share: the cursor, the words' weights (BM25's IDF, set by `counts`),
    and how the page's snippets are read (a statement for the messages, one for the titles)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.idf: dict[str, float] = {}

    def snippets(self, terms: list[str], matches: list[Match]) -> dict[str, str]:
        by_message = {message_id: key for key, message_id, _ in matches if message_id is not None}
        titled = [key for key, message_id, _ in matches if message_id is None]
        found: dict[str, str] = {}
        if by_message:
            rows = self.message_snippets(terms, list(by_message))
            found |= {by_message[message_id]: text for message_id, text in rows}
        if titled:
            found |= dict(self.title_snippets(terms, titled))
        return found

    def message_snippets(self, terms: list[str], message_ids: list[int]) -> list[tuple[int, str]]:
        raise NotImplementedError

    def title_snippets(self, terms: list[str], conversation_ids: list[str]) -> list[tuple[str, str]]:
        raise NotImplementedError


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
