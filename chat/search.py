"""Finding conversations by their words (`GET /conversations?q=`): a selector, reads only.

The query is never handed to the database's query language: it is cut into words (letters and
digits), each quoted (FTS5) or passed as a plain lexeme (PostgreSQL), so quotes, `*`, `NEAR(`,
`-` or `:` are just characters. A conversation matches by its title or by any message's text
(the user's, the assistant's, a tool's name and result); it ranks by its best message, plus its
title's rank (`Backend.title_weight`).

Ranking costs the database for every message that matches, so, as `knowledge.search` does,
words found in more than FREQUENT_MESSAGES messages are left out when the query has rarer
ones (they still add to the ranks of the rare words' matches); when every word is that common,
the messages must hold them all and only the newest are ranked (the FREQUENT_RANKED newest
matches on SQLite, those of the caller's newest conversations on PostgreSQL: `chat.search_sql.
Wanted`), as the conversation being looked for is most often recent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection

from chat.exceptions import InvalidSearch
from chat.search_postgres import PostgresBackend
from chat.search_sql import Backend, Match, Wanted
from chat.search_sqlite import SqliteBackend
from chat.store import selectors
from chat.store.db import db_async
from knowledge.fulltext import query_words

MAX_QUERY_CHARS = 500
MAX_TERMS = 16
FREQUENT_MESSAGES = 1000
FREQUENT_RANKED = 200


@dataclass(frozen=True, kw_only=True)
class Found:
    conversation: Any  # a `Conversation` as `selectors.conversation_list` has it, with its message_count
    snippet: str


def search_terms(query: str) -> list[str]:
    """The query's searchable words, lower-cased, de-duplicated; `InvalidSearch` if none."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"The search is too long ({len(query)} characters; at most {MAX_QUERY_CHARS}).")
    if not (terms := query_words(query, max_terms=MAX_TERMS)):
        raise InvalidSearch("The search has no words to look for (letters or digits); q must hold at least one.")
    return terms


def conversation_search(*, query: str, owner_id: int | None = None, limit: int = 20) -> list[Found]:
    """The caller's conversations that match, best first, each with a snippet of its match."""
    terms = search_terms(query)
    with connection.cursor() as cursor:
        backend: Backend = PostgresBackend(cursor) if connection.vendor == "postgresql" else SqliteBackend(cursor)
        best, words = _ranked(backend, terms, owner_id, limit)
        # The snippets mark the words that found the matches (a rare name, not the common words
        # beside it): FTS5 would otherwise read where each common word stands in every page's
        # message, from its long list of messages.
        snippets = backend.snippets(words, best)
    rows = {row.id: row for row in selectors.conversation_list_rows(conversation_ids=list(snippets), owner_id=owner_id)}
    return [Found(conversation=rows[key], snippet=snippets.get(key, "")) for key, _, _ in best if key in rows]


def _ranked(backend: Backend, terms: list[str], owner_id: int | None, limit: int) -> tuple[list[Match], list[str]]:
    """The best `limit` conversations, and the words that found them."""
    counts = backend.counts(terms, FREQUENT_MESSAGES)
    rare = [term for term, found in zip(terms, counts, strict=True) if found < FREQUENT_MESSAGES]
    # The rare words, every match ranked; then (when there are none, or they match nothing) all
    # of the words in the newest messages, and if none holds them all, any of them.
    # The common words still count in ranking the rare words' matches: of the messages holding a
    # rare name, the one that also holds the query's other words comes first.
    common = tuple(term for term in terms if term not in rare)
    plans = [(rare, False, False, len(rare) * FREQUENT_MESSAGES)] if rare else []
    if common:
        plans += [(terms, True, True, FREQUENT_RANKED), (terms, False, True, FREQUENT_RANKED)]
    messages: list[Match] = []
    titles: dict[str, float] = {}
    words = terms
    for words, every, newest, ranked in plans:
        also = common if words is rare else ()
        wanted = Wanted(terms=words, every=every, newest=newest, owner_id=owner_id, ranked=ranked, also=also)
        messages = backend.messages(wanted)
        titles = dict(backend.titles(words, every=every, owner_id=owner_id, limit=limit))
        if messages or titles:
            break
    scores: dict[str, Match] = {}
    for conversation_id, message_id, rank in messages:
        scores[conversation_id] = (
            conversation_id,
            message_id,
            rank + backend.title_weight * titles.get(conversation_id, 0.0),
        )
    for conversation_id, rank in titles.items():
        if conversation_id not in scores:
            scores[conversation_id] = (conversation_id, None, backend.title_weight * rank)
    return sorted(scores.values(), key=lambda match: match[2], reverse=True)[:limit], words


aconversation_search = db_async(conversation_search)
