"""The Agents SDK `Session` on the database: a conversation's replay items, in order."""

from __future__ import annotations

import json
from typing import Any

from agents.memory.session_settings import SessionSettings

from chat.history import history_trim
from chat.store import selectors, services
from chat.turn.journal import Journal


def _plain(item: Any) -> dict[str, Any]:
    """Items are JSON-shaped dicts; pydantic objects (provider-specific items) are dumped."""
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json", exclude_none=True)
    return json.loads(json.dumps(item, default=lambda value: value.model_dump(mode="json", exclude_none=True)))


class ConversationSession:
    """One conversation's history: the path that ends at the running turn (chat/store/tree.py).
    What is replayed is trimmed to `max_tokens` (the model's context window). New items go to
    the turn's journal, which writes them with its next flush (its heartbeat or its end), so a
    turn costs no database trip per step."""

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        *,
        conversation_id: str,
        journal: Journal,
        max_tokens: int,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.session_id = conversation_id
        self.journal = journal
        self.max_tokens = max_tokens
        # Items read when the turn started (same database trip); used for the first read only,
        # since the run writes to the session afterwards.
        self._history = history

    async def get_items(self, limit: int | None = None) -> list[Any]:
        items, self._history = self._history, None
        if items is None:
            items = await selectors.asession_items(conversation_id=self.session_id, leaf=self.journal.turn_id)
        items = history_trim(items + self.journal.items_unsaved(), max_tokens=self.max_tokens)
        return items[-limit:] if limit else items

    async def add_items(self, items: list[Any]) -> None:
        self.journal.items_add([_plain(item) for item in items])

    async def pop_item(self) -> Any | None:
        if self.journal.items_unsaved():
            return self.journal.items.pop()
        return await services.asession_item_pop(conversation_id=self.session_id)

    async def clear_session(self) -> None:
        await self.journal.items_forget()
        await services.asession_items_clear(conversation_id=self.session_id)
