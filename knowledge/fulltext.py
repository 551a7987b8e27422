"""What the two full-text searches (the knowledge base's, `knowledge.search`, and the
conversations', `chat.search`) share: how a query becomes words, how FTS5 counts a word, and
BM25's weight of a word."""

from __future__ import annotations

import math
import re
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERM_CHARS = 64
# Words that match nearly every passage: they only slow the search down (FTS5 would visit
# every row holding "the") and add nothing to the ranking.
STOPWORDS = frozenset(
    """a about an and are as at be but by can could did do does for from had has have how i if in
    into is it its me my of on or our s so than that the their them then there these they this to
    was we were what when where which who whom why will with would you your""".split()
)


FTS5_COUNT = "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH %s LIMIT %s)"


def query_words(query: str, *, max_terms: int) -> list[str]:
    """The query's searchable words (letters and digits), lower-cased, de-duplicated, stopwords
    left out unless there is nothing else; none when it has no letter or digit."""
    words = list(dict.fromkeys(word.lower()[:MAX_TERM_CHARS] for word in _WORD.findall(query)))
    terms = [word for word in words if word not in STOPWORDS] or words
    return terms[:max_terms]


def fts5_counts(cursor: Any, table: str, terms: list[str], bound: int) -> list[int]:
    """How many rows of the FTS5 `table` hold each term, counted up to `bound` (counting reads
    the word's list of rows, so a common word's full count would cost milliseconds)."""
    sql = FTS5_COUNT.format(table=table)
    found = []
    for term in terms:
        cursor.execute(sql, [f'"{term}"', bound])
        found.append(cursor.fetchone()[0])
    return found


def bm25_idf(total: float, holding: int) -> float:
    """BM25's inverse document frequency of a word `holding` rows of `total` (never negative)."""
    total = max(total, holding)
    return math.log(1 + (total - holding + 0.5) / (holding + 0.5))
