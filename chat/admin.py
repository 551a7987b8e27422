"""The Django admin: inspect conversations, their turns, tool calls, replay items and the ledger.
History is read-only here: editing it would corrupt what the model is replayed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from chat.models import Conversation, Message, SessionItem, ToolCall, Turn, UsageRecord
from chat.store.tree import tree_load


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TurnInline(ReadOnlyInline):
    model = Turn
    fields = ("created_at", "parent", "prompt_id", "model", "status", "finish_reason", "error_code")
    readonly_fields = fields


class SessionItemInline(ReadOnlyInline):
    model = SessionItem
    fields = ("id", "turn", "data", "synthetic")
    readonly_fields = fields


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ("position", "kind", "content", "tool_name", "arguments", "tool_result", "ok", "duration_ms")
    readonly_fields = fields


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "title", "owner", "model", "created_at", "updated_at")
    search_fields = ("id", "title", "owner__username")
    list_filter = ("owner", "model", "turns__status", "created_at")
    date_hierarchy = "created_at"
    inlines = (TurnInline, SessionItemInline)
    readonly_fields = ("tree",)

    @admin.display(description="Tree (the active path in bold)")
    def tree(self, conversation: Conversation) -> str:
        """Each user message, and below it its answers, then what follows each answer."""
        tree = tree_load(conversation_id=conversation.id, active_leaf=conversation.active_leaf_id)
        active = {node.id for node in tree.path()}
        questions = dict(
            Message.objects.filter(turn__conversation=conversation, position=0).values_list("turn_id", "content")
        )
        first_text = Message.objects.filter(turn__conversation=conversation, position__gt=0).exclude(content="")
        answers = dict(first_text.order_by("turn_id", "-position").values_list("turn_id", "content"))

        def below(parent_id: Any) -> str:
            bold = format_html(" style='font-weight:bold'")
            items = [
                format_html(
                    "<li>🧑 {}<ul>{}</ul></li>",
                    Truncator(questions.get(tree.answers[prompt_id][0].id, "")).chars(80),
                    format_html_join(
                        "",
                        "<li{}>🤖 {} <a href='{}'>{}</a>{}</li>",
                        (
                            (
                                bold if turn.id in active else "",
                                Truncator(answers.get(turn.id, "")).chars(80) or "…",
                                reverse("admin:chat_turn_change", args=[turn.id]),
                                str(turn.id)[:8],
                                below(turn.id),
                            )
                            for turn in tree.answers[prompt_id]
                        ),
                    ),
                )
                for prompt_id in tree.user_siblings(parent_id)
            ]
            return format_html("<ul>{}</ul>", format_html_join("", "{}", ((item,) for item in items))) if items else ""

        return below(None) or "—"


@admin.register(Turn)
class TurnAdmin(ReadOnlyAdmin):
    list_display = ("id", "conversation", "model", "status", "finish_reason", "created_at")
    list_filter = ("status", "model", "created_at")
    search_fields = ("id", "conversation__id", "conversation__title")
    inlines = (MessageInline,)


@admin.register(ToolCall)
class ToolCallAdmin(ReadOnlyAdmin):
    list_display = ("tool_name", "turn", "ok", "duration_ms")
    list_filter = ("tool_name", "ok")
    search_fields = ("tool_name", "call_id", "turn__conversation__id")
    readonly_fields = ("turn", "position", "call_id", "tool_name", "arguments", "tool_result", "ok", "duration_ms")
    exclude = ("kind", "content")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).filter(kind="tool")


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "model",
        "provider",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "cost_usd",
        "estimated",
        "conversation",
        "user",
    )
    list_filter = ("user", "model", "provider", "estimated", "created_at")
    search_fields = ("conversation__id", "model")
    date_hierarchy = "created_at"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            totals = changelist.queryset.aggregate(
                input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost_usd=Sum("cost_usd")
            )
            response.context_data["title"] = (
                f"Usage ledger — {totals['input_tokens'] or 0} input / {totals['output_tokens'] or 0} output tokens, "
                f"${totals['cost_usd'] or 0:.4f}"
            )
        return response
