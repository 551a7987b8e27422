"""Conversations, their turns, what the user saw, and what the model must be replayed.

- `Conversation`: one per client id.
- `Turn`: one user message and the assistant's answer to it (the contract's `message_id`).
  Turns form a tree (chat/store/tree.py): each follows its `parent`; turns answering the same
  user message (regenerated answers) share its `prompt_id`; the conversation's `active_leaf`
  ends the path that is shown and replayed.
- `Message`: what the frontend showed, in order: the user's message, assistant text segments
  and tool entries. A tool entry is also the record of that tool call (arguments, result,
  ok, duration), so the display list and the tool-call log are one table and cannot drift.
- `SessionItem`: the Agents SDK's input items (messages, function calls and outputs,
  reasoning), replayed to the model as they are.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# A running turn's lease (chat/turn/lease.py renews it with every heartbeat): a `streaming` turn
# whose heartbeat is older than this belongs to a process that died.
LEASE_STALE_AFTER = timedelta(seconds=12)


class Conversation(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    # AUTH_MODE=django: the user it belongs to (no one else sees it). Null: made without users.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    # The last turn of the path shown and replayed to the model (null: no turn yet). No
    # constraint: a conversation and its turns are deleted together, and a leaf that is gone
    # reads as the newest turn (chat/store/tree.py).
    active_leaf = models.ForeignKey(
        "Turn", on_delete=models.DO_NOTHING, null=True, blank=True, related_name="+", db_constraint=False
    )
    # Whether it ever had a second branch: until then its one path is every turn, and a turn's
    # start reads its replay without walking the tree.
    branched = models.BooleanField(default=False)

    class Meta:
        ordering = ["-updated_at"]
        # A user's newest conversations (their list, and the search of common words) without
        # walking every user's by `updated_at`.
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title or self.id


class TurnStatus(models.TextChoices):
    STREAMING = "streaming"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    # Paused until the user answers its tool approval requests (chat/turn/approval.py): no
    # process runs it and no lease is held, so the reaper leaves it alone.
    WAITING = "waiting"


def turn_lapsed(prefix: str = "") -> Q:
    """Turns whose lease lapsed (their worker died); `prefix` for a related turn's fields."""
    cutoff = timezone.now() - LEASE_STALE_AFTER
    return Q(**{f"{prefix}status": TurnStatus.STREAMING, f"{prefix}heartbeat_at__lt": cutoff})


def turn_leased() -> Q:
    """Turns running with a current lease."""
    return Q(status=TurnStatus.STREAMING, heartbeat_at__gte=timezone.now() - LEASE_STALE_AFTER)


class Turn(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    # The turn this one follows (null: the conversation's first message, or an edit of it).
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="children")
    # The user message it answers (the contract's user entry `id`): a regenerated answer keeps it.
    prompt_id = models.UUIDField(default=uuid.uuid4, editable=False)
    model = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=TurnStatus.choices, default=TurnStatus.STREAMING, db_index=True)
    finish_reason = models.CharField(max_length=16, blank=True, default="")
    error_code = models.CharField(max_length=40, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Refreshed while the turn runs; a `streaming` turn whose heartbeat is stale belongs to a
    # process that died, and is `interrupted`.
    heartbeat_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.conversation_id} {self.created_at:%Y-%m-%d %H:%M:%S} {self.status}"


class MessageKind(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Message(models.Model):
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    content = models.TextField(blank=True, default="")
    # Tool entries only.
    call_id = models.CharField(max_length=200, blank=True, default="")
    tool_name = models.CharField(max_length=200, blank=True, default="")
    arguments = models.JSONField(null=True, blank=True)
    tool_result = models.TextField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["turn__created_at", "position"]
        constraints = [models.UniqueConstraint(fields=["turn", "position"], name="message_turn_position")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.content[:60]}"


class ToolCall(Message):
    """The tool entries of `Message`, for the admin's tool-call log."""

    class Meta:
        proxy = True


class SessionItem(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="items")
    turn = models.ForeignKey(Turn, on_delete=models.SET_NULL, null=True, blank=True, related_name="items")
    data = models.JSONField()
    # Synthetic outputs recorded for tool calls that a cancel left without one.
    synthetic = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        kind = self.data.get("type") or self.data.get("role") or "item"
        return f"{self.conversation_id} #{self.pk} {kind}"


class UsageKind(models.TextChoices):
    TURN = "turn"  # a request of a chat turn
    TITLE = "title"  # a conversation's title, made by a model after its first turn (chat.titles)


class UsageRecord(models.Model):
    """The ledger: one row per model request. Rows outlive their conversation (links emptied),
    so totals never shrink."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    turn = models.ForeignKey(Turn, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage")
    # Whose spending it is (AUTH_MODE=django): kept when the conversation is deleted, so a
    # user's daily budget cannot be reset by deleting conversations.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    kind = models.CharField(max_length=16, choices=UsageKind.choices, default=UsageKind.TURN)
    model = models.CharField(max_length=200, db_index=True)
    provider = models.CharField(max_length=40)
    input_tokens = models.PositiveIntegerField(default=0)  # includes the cached part
    cached_input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=10, null=True, blank=True)
    # The prices used, US dollars per million tokens (null: no known price).
    input_price = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    cached_input_price = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    output_price = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    estimated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model} {self.input_tokens}+{self.output_tokens} ${self.cost_usd}"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"  # by the user, or by TOOL_APPROVAL_TIMEOUT
    CANCELLED = "cancelled"  # its turn was cancelled while it waited


class ToolApproval(models.Model):
    """A tool call the user must approve before it runs (the contract's `approval_id`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="approvals")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="approvals")
    call_id = models.CharField(max_length=200)
    tool_name = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, db_index=True
    )
    reason = models.TextField(blank=True, default="")
    # "conversation": later calls of the tool in this conversation need no approval.
    remember = models.CharField(max_length=16, default="once")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.tool_name} {self.status}"


class PausedTurn(models.Model):
    """A `waiting` turn's paused Agents SDK run, so that any worker, at any later time, can
    resume it: the run state (`RunState.to_json()`) and the frames its sockets were sent."""

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, primary_key=True, related_name="paused")
    state = models.JSONField()
    frames = models.JSONField(default=list)
    first_turn = models.BooleanField(default=False)  # the conversation's first: a title follows it
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"paused {self.turn_id}"
