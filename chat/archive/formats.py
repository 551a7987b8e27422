"""Import files, read into one shape: conversations of turns (the user's message, then what
answered it). Three formats are known, told apart by their shape:

- ours (`chat.archive.export`): turns, messages and the model's replay items as they were;
- ChatGPT's `conversations.json`: a list of conversations, each a `mapping` tree of nodes
  (`parent`, `children`, `message`) and a `current_node`, the branch the user last saw;
- Open WebUI's export: a list of chats, each with `chat.history.messages` (a tree by
  `parentId`) and `chat.history.currentId`.

Of a tree, the branch that ends at the current node is imported (what the user saw last).
System messages and hidden ones are left out. A file is read whole before anything is written:
a malformed conversation refuses the file, naming which one and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from chat.archive.export import FORMAT
from chat.exceptions import ImportRefused


@dataclass
class Entry:
    """An assistant text segment (`tool_name` empty) or a tool entry."""

    content: str = ""
    tool_name: str = ""
    call_id: str = ""
    arguments: Any = None
    result: str | None = None
    ok: bool | None = None


@dataclass
class ImportedTurn:
    user: str
    created_at: datetime | None = None
    entries: list[Entry] = field(default_factory=list)
    model: str = ""
    status: str = "complete"
    finish_reason: str = "stop"
    error_code: str = ""
    error: str = ""


@dataclass
class ImportedConversation:
    title: str
    model: str
    created_at: datetime | None
    turns: list[ImportedTurn]
    replay: list[dict[str, Any]] | None = None  # ours only: what the model was replayed, as it was
    replay_turns: list[int | None] | None = None  # ours, when the file says: each item's turn (its index)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- ours ---------------------------------------------------------------------------------------
class _OurTool(_Loose):
    call_id: str = ""
    name: str
    arguments: Any = None
    result: str | None = None
    ok: bool | None = None


class _OurMessage(_Loose):
    turn_id: str
    role: str
    content: str = ""
    tool: _OurTool | None = None


class _OurTurn(_Loose):
    id: str
    model: str = ""
    status: str = "complete"
    finish_reason: str = ""
    error_code: str = ""
    error: str = ""
    created_at: datetime | None = None


class _OurConversation(_Loose):
    title: str = ""
    model: str = ""
    created_at: datetime | None = None
    turns: list[_OurTurn]
    messages: list[_OurMessage]
    replay: list[dict[str, Any]] | None = None
    replay_turn_ids: list[str | None] | None = None


def _replay_turns(conversation: _OurConversation, turn_ids: list[str]) -> list[int | None] | None:
    """Each replay item's turn, as the file names it (None when an older file does not)."""
    named = conversation.replay_turn_ids
    if conversation.replay is None or named is None:
        return None
    if len(named) != len(conversation.replay):
        raise ValueError(f"its replay_turn_ids has {len(named)} ids for {len(conversation.replay)} replay items")
    index = {turn_id: position for position, turn_id in enumerate(turn_ids)}
    unknown = next((turn_id for turn_id in named if turn_id is not None and turn_id not in index), None)
    if unknown is not None:
        raise ValueError(f"a replay item names turn {unknown!r}, which the file does not have")
    return [index[turn_id] if turn_id is not None else None for turn_id in named]


def _ours(conversation: _OurConversation) -> ImportedConversation:
    turns = {
        turn.id: ImportedTurn(
            user="",
            created_at=turn.created_at,
            model=turn.model,
            status=turn.status,
            finish_reason=turn.finish_reason,
            error_code=turn.error_code,
            error=turn.error,
        )
        for turn in conversation.turns
    }
    for message in conversation.messages:
        turn = turns.get(message.turn_id)
        if turn is None:
            raise ValueError(f"a message names turn {message.turn_id!r}, which the file does not have")
        if message.role == "user":
            turn.user = message.content
        elif message.role == "tool" and message.tool is not None:
            tool = message.tool
            turn.entries.append(
                Entry(
                    tool_name=tool.name, call_id=tool.call_id, arguments=tool.arguments, result=tool.result, ok=tool.ok
                )
            )
        elif message.role == "assistant":
            turn.entries.append(Entry(content=message.content))
        else:
            raise ValueError(f"a message has the role {message.role!r} (user, assistant or tool)")
    return ImportedConversation(
        title=conversation.title,
        model=conversation.model,
        created_at=conversation.created_at,
        turns=list(turns.values()),
        replay=conversation.replay,
        replay_turns=_replay_turns(conversation, list(turns)),
    )


# -- ChatGPT ------------------------------------------------------------------------------------
class _GptAuthor(_Loose):
    role: str
    name: str | None = None


class _GptContent(_Loose):
    content_type: str = "text"
    parts: list[Any] | None = None
    text: str | None = None
    result: str | None = None


class _GptMessage(_Loose):
    author: _GptAuthor
    create_time: float | None = None
    content: _GptContent | None = None
    recipient: str | None = "all"
    metadata: dict[str, Any] | None = None


class _GptNode(_Loose):
    message: _GptMessage | None = None
    parent: str | None = None


class _GptConversation(_Loose):
    title: str | None = ""
    create_time: float | None = None
    mapping: dict[str, _GptNode]
    current_node: str
    default_model_slug: str | None = None


def _gpt_text(content: _GptContent | None) -> str:
    if content is None:
        return ""
    if content.parts is not None:
        return "\n".join(part for part in content.parts if isinstance(part, str))
    return content.text or content.result or ""


def _branch(nodes: dict[str, Any], current: str, parent_of: Any) -> list[Any]:
    """The nodes from the root to `current`, following parents (a cycle is an error)."""
    branch, seen, node_id = [], set(), current
    while node_id is not None:
        if node_id in seen:
            raise ValueError("its message tree has a cycle")
        if node_id not in nodes:
            raise ValueError(f"its tree names the node {node_id!r}, which it does not have")
        seen.add(node_id)
        branch.append(nodes[node_id])
        node_id = parent_of(nodes[node_id])
    return branch[::-1]


def _chatgpt(conversation: _GptConversation) -> ImportedConversation:
    turns: list[ImportedTurn] = []
    for node in _branch(conversation.mapping, conversation.current_node, lambda node: node.parent):
        message = node.message
        if message is None or (message.metadata or {}).get("is_visually_hidden_from_conversation"):
            continue
        text, role = _gpt_text(message.content), message.author.role
        created = datetime.fromtimestamp(message.create_time, UTC) if message.create_time else None
        if role == "user":
            turns.append(ImportedTurn(user=text, created_at=created))
        elif not turns or role == "system":
            continue  # a system prompt, or an answer to nothing
        elif role == "assistant" and message.recipient not in (None, "all"):  # a call to a tool
            turns[-1].entries.append(Entry(tool_name=message.recipient, arguments={"input": text}))
        elif role == "assistant":
            if text:
                turns[-1].entries.append(Entry(content=text))
        elif role == "tool":
            pending = turns[-1].entries[-1] if turns[-1].entries else None
            if pending is None or not pending.tool_name or pending.result is not None:
                pending = Entry(tool_name=message.author.name or "tool", arguments={})
                turns[-1].entries.append(pending)
            pending.result, pending.ok = text, True
    return ImportedConversation(
        title=conversation.title or "",
        model=conversation.default_model_slug or "",
        created_at=datetime.fromtimestamp(conversation.create_time, UTC) if conversation.create_time else None,
        turns=turns,
    )


# -- Open WebUI ---------------------------------------------------------------------------------
class _WebuiMessage(_Loose):
    role: str
    content: str | None = ""
    parentId: str | None = None
    timestamp: float | None = None
    model: str | None = None


class _WebuiHistory(_Loose):
    messages: dict[str, _WebuiMessage]
    currentId: str | None = None


class _WebuiChat(_Loose):
    title: str | None = ""
    models: list[str] | None = None
    history: _WebuiHistory
    timestamp: float | None = None


class _WebuiExport(_Loose):
    title: str | None = ""
    chat: _WebuiChat
    created_at: float | None = None


def _seconds(value: float | None) -> datetime | None:
    if not value:
        return None
    # Open WebUI writes seconds in some places and milliseconds in others.
    return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)


def _webui(export: _WebuiExport) -> ImportedConversation:
    history = export.chat.history
    turns: list[ImportedTurn] = []
    current = history.currentId
    branch = _branch(history.messages, current, lambda message: message.parentId) if current else []
    model = ""
    for message in branch:
        text = message.content or ""
        if message.role == "user":
            turns.append(ImportedTurn(user=text, created_at=_seconds(message.timestamp)))
        elif message.role == "assistant" and turns:
            model = message.model or model
            if text:
                turns[-1].entries.append(Entry(content=text))
    models = export.chat.models or []
    return ImportedConversation(
        title=export.title or export.chat.title or "",
        model=models[0] if models else model,
        created_at=_seconds(export.created_at or export.chat.timestamp),
        turns=turns,
    )


# -- the file -----------------------------------------------------------------------------------
def _kind(document: Any) -> tuple[str, list[Any]]:
    if isinstance(document, dict) and document.get("format") == FORMAT:
        if document.get("version") != 1:
            raise ImportRefused(f"This export is of version {document.get('version')!r}; this server reads version 1.")
        conversations = document.get("conversations")
        return "ours", conversations if isinstance(conversations, list) else [conversations]
    items = document if isinstance(document, list) else [document]
    first = items[0] if items and isinstance(items[0], dict) else {}
    if "mapping" in first:
        return "chatgpt", items
    if isinstance(first.get("chat"), dict) and "history" in first["chat"]:
        return "openwebui", items
    raise ImportRefused(
        "The file is not a DreamyTin export, a ChatGPT conversations.json or an Open WebUI export "
        "(its shape matches none of them)."
    )


_READERS: dict[str, tuple[type[BaseModel], Any]] = {
    "ours": (_OurConversation, _ours),
    "chatgpt": (_GptConversation, _chatgpt),
    "openwebui": (_WebuiExport, _webui),
}
_NAMES = {"ours": "DreamyTin", "chatgpt": "ChatGPT", "openwebui": "Open WebUI"}


def _why(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def import_read(raw: bytes) -> list[ImportedConversation]:
    """Every conversation of the file, or `ImportRefused` saying what is wrong with it."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportRefused(f"The file is not JSON ({exc}).") from exc
    kind, items = _kind(document)
    schema, read = _READERS[kind]
    conversations = []
    for index, item in enumerate(items):
        try:
            conversation = read(schema.model_validate(item))
        except ValidationError as exc:
            raise ImportRefused(f"{_NAMES[kind]} conversation {index + 1}: {_why(exc)}.") from exc
        except ValueError as exc:
            raise ImportRefused(f"{_NAMES[kind]} conversation {index + 1}: {exc}.") from exc
        if conversation.turns:  # one with no message of the user (only a system prompt) is left out
            conversations.append(conversation)
    if not conversations:
        raise ImportRefused("The file holds no conversation with a message of the user.")
    return conversations
