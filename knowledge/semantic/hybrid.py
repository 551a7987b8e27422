"""Hybrid ranking: the full-text ranking and the vectors' ranking fused by reciprocal rank
(RRF: each list gives a passage 1 / (k + its place), and the sums rank the union). RRF needs no
calibration between BM25 scores and cosines, which live on unrelated scales."""

from __future__ import annotations

import logging
from collections import defaultdict

from knowledge.models import Chunk
from knowledge.semantic.encoder import encoder
from knowledge.semantic.vectors import vector_index
from knowledge.sql import Row

logger = logging.getLogger(__name__)

# The usual constant (Cormack et al., 2009): a first place is worth 1/61, a tenth 1/70.
RRF_K = 60
# Passages taken from each ranking before fusing.
CANDIDATES = 50
# A passage this far from the query in meaning is not an answer: without a floor, the nearest
# passages of notes about anything else would be offered as "best first" to a question the
# notes cannot answer. (Unrelated passages score about 0 with this model, related ones 0.35+.)
MIN_COSINE = 0.25


def fuse(rows: list[Row], query: str) -> list[Row]:
    """The full-text rows (best first) fused with the passages nearest the query in meaning;
    a row's rank becomes minus its fused score (lower is better, as for the full-text rank).
    When the query cannot be embedded, the full-text rows alone: a search never fails for it."""
    try:
        # A lone surrogate (valid JSON, "\ud800") is no text to the tokenizer.
        meaning = encoder().embed([query.encode("utf-8", "replace").decode()])[0]
    except Exception:  # the model failing must not take the word search down with it
        logger.exception("knowledge: the query could not be embedded; full-text ranking alone")
        return rows
    nearest = [chunk_id for chunk_id, cosine in vector_index().nearest(meaning, CANDIDATES) if cosine >= MIN_COSINE]
    score: dict[int, float] = defaultdict(float)
    for ranking in ([row[0] for row in rows], nearest):
        for place, chunk_id in enumerate(ranking, 1):
            score[chunk_id] += 1.0 / (RRF_K + place)
    by_id = {row[0]: row for row in rows}
    missing = [chunk_id for chunk_id in nearest if chunk_id not in by_id]
    # A passage deleted since the vectors were synced is simply not found here.
    for found in Chunk.objects.filter(id__in=missing).values_list(
        "id", "document__root", "document__path", "start_line", "heading", "body"
    ):
        by_id[found[0]] = (*found, 0.0)
    ordered = sorted(by_id, key=lambda chunk_id: -score[chunk_id])
    return [(*by_id[chunk_id][:-1], -score[chunk_id]) for chunk_id in ordered]
