"""A conversation's tree of turns (issue 30), and which path of it is active.

A turn is a user message and its answer. Its `parent` is the turn it follows; turns with the
same `prompt_id` answer the same user message (regenerated answers); turns with the same parent
and different `prompt_id`s follow edits of the user message there. The contract's tree has two
kinds of node: a user message (id: its `prompt_id`) whose parent is the turn before it, and an
answer (id: the turn's id) whose parent is the user message it answers.

The conversation's `active_leaf` ends the active path: what `GET /conversations/<id>` shows and
what the model is replayed. A leaf that is gone (its turn deleted) reads as the newest turn.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from chat.exceptions import NotAReply, NotAUserMessage, UnknownMessage
from chat.models import Conversation, Turn

Role = Literal["user", "assistant"]


class Node(NamedTuple):
    """A turn, as the tree needs it."""

    id: uuid.UUID
    parent_id: uuid.UUID | None
    prompt_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True)
class BranchRequest:
    """A `regenerate` (`message_id`: a turn) or an `edit` (`message_id`: a user message)."""

    kind: Literal["regenerate", "edit"]
    message_id: str


class Tree:
    def __init__(self, turns: list[Node], active_leaf: uuid.UUID | None) -> None:
        self.turns = {turn.id: turn for turn in sorted(turns, key=lambda turn: (turn.created_at, turn.id))}
        self.answers: dict[uuid.UUID, list[Node]] = {}  # by prompt_id, oldest first
        self.children: dict[uuid.UUID | None, list[Node]] = {}  # by parent id, oldest first
        for turn in self.turns.values():
            self.answers.setdefault(turn.prompt_id, []).append(turn)
            self.children.setdefault(turn.parent_id, []).append(turn)
        if active_leaf not in self.turns:
            active_leaf = next(reversed(self.turns), None)
        self.active_leaf = active_leaf

    def path(self, leaf: uuid.UUID | None = None) -> list[Node]:
        """The turns from the first to `leaf` (default: the active leaf), in order."""
        node = self.turns.get(leaf if leaf is not None else self.active_leaf)  # type: ignore[arg-type]
        path: list[Node] = []
        while node is not None:
            path.append(node)
            node = self.turns.get(node.parent_id) if node.parent_id is not None else None
        path.reverse()
        return path

    def resolve(self, message_id: str) -> tuple[Role, uuid.UUID]:
        """Which node `message_id` names; `UnknownMessage` when none of this conversation."""
        try:
            key = uuid.UUID(message_id)
        except (ValueError, AttributeError, TypeError):
            key = None
        if key in self.turns:
            return "assistant", key  # type: ignore[return-value]
        if key in self.answers:
            return "user", key  # type: ignore[return-value]
        raise UnknownMessage(f"No message {message_id!r} in this conversation.")

    def turn_of(self, message_id: str) -> Node:
        role, key = self.resolve(message_id)
        if role != "assistant":
            raise NotAReply("regenerate takes an answer's message_id (a turn id), not a user message's id.")
        return self.turns[key]

    def prompt_of(self, message_id: str) -> Node:
        """The first turn answering the user message `message_id`."""
        role, key = self.resolve(message_id)
        if role != "user":
            raise NotAUserMessage("edit takes a user message's id, not an answer's message_id.")
        return self.answers[key][0]

    def prompt_parent(self, prompt_id: uuid.UUID) -> uuid.UUID | None:
        return self.answers[prompt_id][0].parent_id

    def user_siblings(self, parent_id: uuid.UUID | None) -> list[uuid.UUID]:
        """The user messages after turn `parent_id` (None: the first ones), oldest first."""
        return list(dict.fromkeys(turn.prompt_id for turn in self.children.get(parent_id, [])))

    def leaf_under(self, role: Role, key: uuid.UUID) -> uuid.UUID:
        """The newest turn at or below a node: a leaf, since a turn is newer than its parent."""
        stack = list(self.answers[key]) if role == "user" else [self.turns[key]]
        newest = stack[0]
        while stack:
            turn = stack.pop()
            newest = max(newest, turn, key=lambda node: (node.created_at, node.id))
            stack.extend(self.children.get(turn.id, []))
        return newest.id

    def branch_of_user(self, turn: Node) -> tuple[int, int]:
        siblings = self.user_siblings(turn.parent_id)
        return siblings.index(turn.prompt_id) + 1, len(siblings)

    def branch_of_answer(self, turn: Node) -> tuple[int, int]:
        answers = self.answers[turn.prompt_id]
        return answers.index(turn) + 1, len(answers)

    def nodes(self) -> list[dict[str, Any]]:
        """The contract's nodes (usage left for the caller), user messages before their answers."""
        nodes: list[dict[str, Any]] = []
        for prompt_id, answers in self.answers.items():
            first = answers[0]
            parent = str(first.parent_id) if first.parent_id is not None else None
            nodes.append(
                {"id": str(prompt_id), "parent_id": parent, "role": "user", "created_at": first.created_at.isoformat()}
            )
            nodes.extend(
                {
                    "id": str(turn.id),
                    "parent_id": str(prompt_id),
                    "role": "assistant",
                    "created_at": turn.created_at.isoformat(),
                }
                for turn in answers
            )
        return nodes


def branch_entry(index: int, count: int) -> dict[str, int]:
    return {"index": index, "count": count}


def tree_load(*, conversation_id: str, active_leaf: Any = None, lock: bool = False) -> Tree:
    """The conversation's tree. `active_leaf`: its value when the caller read the row already;
    `lock`: read (and lock, PostgreSQL) the row in the caller's transaction."""
    if active_leaf is None:
        rows = Conversation.objects.filter(id=conversation_id)
        if lock:
            rows = rows.select_for_update()
        active_leaf = rows.values_list("active_leaf_id", flat=True).first()
    turns = Turn.objects.filter(conversation_id=conversation_id).order_by()
    return Tree([Node(*row) for row in turns.values_list("id", "parent_id", "prompt_id", "created_at")], active_leaf)
