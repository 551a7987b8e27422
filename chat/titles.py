"""Titles made by a model after a conversation's first turn.

Until then (and whenever this fails) the title is the first message cut short
(`chat.store.services.title_from_message`). After the first turn ends well, `title_schedule`
starts a task of its own: the reply has been sent by then, so it never waits on this. The task
asks TITLE_MODEL (unset: the local model when it runs, else nothing; `none`: never) through the
same Agents SDK route as a turn, and writes the title with its ledger row (kind `title`, no turn:
a turn's totals stay its own) in one transaction, unless the title changed meanwhile. Any
failure is logged and keeps the old title.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agents import Agent, ModelSettings, RunConfig, Runner
from django.conf import settings
from django.db import transaction

from chat.catalog import CatalogModel, catalog_get
from chat.local_model import LOCAL_MODEL_ID
from chat.models import Conversation, Message, MessageKind, UsageKind
from chat.provider_bodies import provider_streams_closed
from chat.providers import model_resolve, provider_turn_slot
from chat.store.db import db_async
from chat.usage import request_usage, usage_row

logger = logging.getLogger(__name__)
TITLE_MAX_CHARS = 60
# Of the question and the answer: enough to tell the subject, small for the local model's context.
EXCERPT_CHARS = 1500
TITLE_MAX_TOKENS = 32
TITLE_TIMEOUT_SECONDS = 60.0
INSTRUCTIONS = (
    "You name conversations. Reply with a short title for the conversation you are shown: at most "
    "six words, in the conversation's language, no quotes, no final full stop. Reply with the title only."
)
_running: set[asyncio.Task[None]] = set()


def title_model() -> CatalogModel | None:
    """The model that makes titles now, or None (titles then stay the first message)."""
    chosen = settings.TITLE_MODEL
    if chosen is not None and chosen.lower() == "none":
        return None
    model = catalog_get().get(chosen or LOCAL_MODEL_ID)
    return model if model is not None and model.usable else None


def title_clean(text: str) -> str:
    """The model's answer as a title: its first line, without quotes, a `Title:` label or a
    full stop, at most TITLE_MAX_CHARS (cut at a word)."""
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = line.strip().strip("*#").strip()
    if line.lower().startswith("title:"):
        line = line[len("title:") :].strip()
    line = " ".join(line.strip("\"'“”‘’`").rstrip(".").split())
    if len(line) <= TITLE_MAX_CHARS:
        return line
    return line[: TITLE_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"


def _first_exchange(conversation_id: str) -> tuple[str, str, str] | None:
    """The title now, the first question and the first answer's text; None if it is gone."""
    title = Conversation.objects.filter(id=conversation_id).values_list("title", flat=True).first()
    if title is None:
        return None
    first = Message.objects.filter(turn__conversation_id=conversation_id).order_by("turn__created_at", "position")
    messages = list(first.values_list("kind", "content")[:20])
    question = next((content for kind, content in messages if kind == MessageKind.USER), "")
    answer = "\n".join(content for kind, content in messages[1:] if kind == MessageKind.ASSISTANT)
    return title, question, answer


@transaction.atomic
def title_save(*, conversation_id: str, old: str, new: str, usage_rows: list[Any]) -> bool:
    """Write the title (unless it changed since `old` was read) and the request's ledger rows;
    the rows are written either way: the request was made."""
    for row in usage_rows:
        row.save()
    return bool(Conversation.objects.filter(id=conversation_id, title=old).update(title=new))


_afirst_exchange = db_async(_first_exchange)
_atitle_save = db_async(title_save)


async def _ask(model: CatalogModel, question: str, answer: str) -> tuple[str, list[Any]]:
    """The model's title for the exchange, and the usage of each of its requests."""
    resolved = model_resolve(model)
    agent = Agent(
        name="DreamyTin titles",
        instructions=INSTRUCTIONS,
        model=resolved.model,
        model_settings=resolved.settings.resolve(ModelSettings(max_tokens=TITLE_MAX_TOKENS, temperature=0.2)),
    )
    prompt = f"User: {question[:EXCERPT_CHARS]}\n\nAssistant: {answer[:EXCERPT_CHARS]}"
    started = time.perf_counter()
    async with provider_turn_slot(model, _no_notice), provider_streams_closed():
        result = Runner.run_streamed(
            agent,
            prompt,
            max_turns=1,
            run_config=RunConfig(tracing_disabled=not settings.AGENTS_TRACING, workflow_name="DreamyTin title"),
        )
        async for _ in result.stream_events():
            pass
    ended = time.perf_counter()
    usages = [
        request_usage(response.usage, started=started, first_output=None, ended=ended)
        for response in result.raw_responses
    ]
    return str(result.final_output or ""), usages


async def _no_notice(ahead: int) -> None:
    """Nobody is told that a title waits for the local model."""


async def title_make(*, conversation_id: str, owner_id: int | None = None) -> str | None:
    """Ask the title model for the conversation's title and store it; the new title, or None
    (no title model, the conversation is gone, or the title changed meanwhile)."""
    model = title_model()
    if model is None:
        return None
    exchange = await _afirst_exchange(conversation_id)
    if exchange is None:
        return None
    old, question, answer = exchange
    async with asyncio.timeout(TITLE_TIMEOUT_SECONDS):
        text, usages = await _ask(model, question, answer)
    rows = [
        usage_row(conversation_id=conversation_id, turn_id=None, model=model, usage=usage, user_id=owner_id)
        for usage in usages
    ]
    for row in rows:
        row.kind = UsageKind.TITLE
    title = title_clean(text)
    saved = await _atitle_save(conversation_id=conversation_id, old=old, new=title or old, usage_rows=rows)
    return title if saved and title else None


async def _title_quietly(conversation_id: str, owner_id: int | None) -> None:
    try:
        await title_make(conversation_id=conversation_id, owner_id=owner_id)
    except Exception:  # the first-message title stays
        logger.warning("could not make a title for %s", conversation_id, exc_info=True, extra={"event": "title_failed"})


def title_schedule(*, conversation_id: str, first_turn: bool, owner_id: int | None = None) -> None:
    """After a turn that ended well: when it was the conversation's first, make its title in
    the background (the turn-end path calls this; it returns at once)."""
    if not first_turn or title_model() is None:
        return
    task = asyncio.get_running_loop().create_task(_title_quietly(conversation_id, owner_id), name="title")
    _running.add(task)
    task.add_done_callback(_running.discard)


async def titles_settle(seconds: float) -> None:
    """Let the titles being made finish (the process is stopping); those still running past
    `seconds` are cancelled, keeping the old title."""
    pending = [task for task in _running if task.get_loop() is asyncio.get_running_loop()]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=seconds)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
