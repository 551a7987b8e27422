"""The `search_knowledge` tool: the best passages of the user's notes, with `path:line` to cite."""

from __future__ import annotations

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from pydantic import Field

from knowledge.indexer import index_refresh, knowledge_roots
from knowledge.search import Hit, query_terms, search_passages
from tools.base import BaseTool, ToolArgs, ToolError, ToolResult
from tools.registry import register

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
MAX_SHOWN_LINE_CHARS = 300


class SearchKnowledgeArgs(ToolArgs):
    query: str = Field(description="Keywords or a question, e.g. 'heron nesting season'")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="How many passages to return")


def citation(hit: Hit, several_roots: bool) -> str:
    path = f"{hit.root}/{hit.path}" if several_roots else hit.path
    return f"{path}:{hit.line}"


def _format(query: str, hits: list[Hit], several_roots: bool) -> str:
    if not hits:
        return f"No passage of the notes matches {query!r}. Try other or fewer words."
    found = "1 passage" if len(hits) == 1 else f"{len(hits)} passages"
    parts = [f"{found} from the notes, best first. Cite them as path:line."]
    for number, hit in enumerate(hits, 1):
        heading = f" ({hit.heading})" if hit.heading else ""
        shown = [
            f"{hit.start_line + offset:>5} | {text[:MAX_SHOWN_LINE_CHARS]}"
            for offset, text in enumerate(hit.lines)
            if text.strip()
        ]
        parts.append(f"[{number}] {citation(hit, several_roots)}{heading}\n" + "\n".join(shown))
    return "\n\n".join(parts)


def _search(args: SearchKnowledgeArgs) -> ToolResult:
    roots = knowledge_roots()
    if not roots:
        raise ToolError("No knowledge folder is configured.")
    terms = query_terms(args.query)
    index_refresh()
    hits = search_passages(terms, args.limit, meaning=args.query if settings.KNOWLEDGE_SEMANTIC else None)
    several = len(roots) > 1
    return ToolResult.success(
        _format(args.query, hits, several),
        results=[{"citation": citation(hit, several), "heading": hit.heading} for hit in hits],
    )


@register
class SearchKnowledge(BaseTool[SearchKnowledgeArgs]):
    name = "search_knowledge"
    description = (
        "Search the user's notes (their knowledge base) by keywords or a question. Returns the best passages, "
        "each with its file path and line number; cite the ones you use as path:line."
    )
    args_model = SearchKnowledgeArgs
    instructions = (
        "The user keeps notes that you can search with the `search_knowledge` tool. When a question may "
        "be answered by their notes, search them first. When your answer uses a passage from the notes, "
        "cite it as `path:line` exactly as the tool gave it (e.g. `notes/heron.md:33`); never invent a "
        "citation, and say so when the notes do not answer the question."
    )

    def available(self) -> bool:
        return bool(settings.KNOWLEDGE_DIRS)

    async def execute(self, args: SearchKnowledgeArgs) -> ToolResult:
        # Off the event loop; the connection is closed after the call, as Channels' consumers do.
        return await DatabaseSyncToAsync(_search, thread_sensitive=False)(args)
