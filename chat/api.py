"""REST endpoints of the chat app: models and conversations."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from django.http import HttpRequest, JsonResponse
from ninja import Query, Router, Schema
from pydantic import Field

from chat.catalog import PROVIDERS, catalog_get
from chat.exceptions import InvalidApprovalAnswer, InvalidConversationId
from chat.ids import conversation_id_valid
from chat.protocol import text_storable
from chat.search import conversation_search
from chat.store import approvals, branches, selectors, services
from chat.turn import approval_answer, client_key, conversation_forget, snapshot
from chat.usage import usage_report, usage_totals
from tools.approval import approval_configured

router = Router()
UNTITLED = "New conversation"


class ConversationCreateIn(Schema):
    session_id: str = Field(description="The client id of the conversation (1-64 of A-Z a-z 0-9 - _)")
    model: str | None = None


def _check_id(conversation_id: str) -> None:
    if not conversation_id_valid(conversation_id):
        raise InvalidConversationId("Conversation ids are 1-64 characters of letters, digits, '-' and '_'.")


def _title(conversation: Any) -> str:
    # Stored empty until the first message titles it; a blank row in the sidebar until then.
    return conversation.title or UNTITLED


def _owner(request: HttpRequest) -> int | None:
    """The caller's user id in AUTH_MODE=django (accounts.middleware identified it), else None."""
    return request.identity.owner_id  # type: ignore[attr-defined]


def _client(request: HttpRequest) -> str:
    """The page that asks (chat/turn/delivery.py): its socket that joins next starts where this
    answer stops."""
    identity = request.identity  # type: ignore[attr-defined]
    return client_key(
        user_id=identity.user_id,
        address=identity.address,
        origin=request.headers.get("Origin", ""),
        user_agent=request.headers.get("User-Agent", ""),
    )


def _iso(value: Any) -> str:
    return value.isoformat()


@router.get("/models", tags=["models"], summary="Usable models, the default, configured providers")
def models(request: HttpRequest) -> dict[str, Any]:
    catalog = catalog_get()
    usable = catalog.usable_models()
    providers = {provider: False for provider in PROVIDERS}
    for model in usable.values():
        providers[model.provider] = True
    return {
        "defaultModel": catalog.usable_default(),
        "models": {key: model.as_public_dict() for key, model in usable.items()},
        "providers": providers,
    }


class ConversationFilters(Schema):
    q: str | None = Field(None, description="Words to find in titles and messages: only matches, best first")
    limit: int = Field(20, ge=1, le=100, description="With q: at most this many conversations")


def _list_entry(conversation: Any) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": _title(conversation),
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "message_count": conversation.message_count,
        "model": conversation.model,
    }


@router.get("/conversations", tags=["conversations"], summary="All conversations, newest first, or those matching q")
def conversation_list(request: HttpRequest, filters: Query[ConversationFilters]) -> dict[str, Any]:
    if filters.q is not None:
        found = conversation_search(query=filters.q, owner_id=_owner(request), limit=filters.limit)
        entries = [{**_list_entry(hit.conversation), "match": {"snippet": hit.snippet}} for hit in found]
        return {"conversations": entries}
    return {"conversations": [_list_entry(row) for row in selectors.conversation_list(owner_id=_owner(request))]}


@router.post("/conversations", tags=["conversations"], summary="Create (or return) a conversation")
def conversation_create(request: HttpRequest, payload: ConversationCreateIn) -> JsonResponse:
    _check_id(payload.session_id)
    catalog = catalog_get()
    requested = catalog.get(payload.model) if payload.model else None
    # Never refused over its model: the frontend creates a conversation on first load with a
    # built-in default the catalog may lack. The response's `model` says what it got.
    model = requested.id if requested is not None and requested.usable else catalog.usable_default()
    conversation, created = services.conversation_create(
        conversation_id=payload.session_id, model=model, owner_id=_owner(request)
    )
    body = _conversation_body(conversation, request)
    return JsonResponse(body, status=201 if created else 200, json_dumps_params={"ensure_ascii": False})


@router.get("/conversations/{conversation_id}", tags=["conversations"], summary="One conversation and its messages")
def conversation_detail(request: HttpRequest, conversation_id: str) -> JsonResponse:
    _check_id(conversation_id)
    conversation = selectors.conversation_get(conversation_id=conversation_id, owner_id=_owner(request))
    return JsonResponse(_conversation_body(conversation, request), json_dumps_params={"ensure_ascii": False})


@router.delete("/conversations/{conversation_id}", tags=["conversations"], summary="Delete a conversation")
def conversation_delete(request: HttpRequest, conversation_id: str) -> dict[str, str]:
    _check_id(conversation_id)
    services.conversation_delete(conversation_id=conversation_id, owner_id=_owner(request))
    conversation_forget(conversation_id)
    return {"message": f"Conversation {conversation_id} deleted"}


class BranchIn(Schema):
    message_id: str = Field(description="A user message's id or an answer's message_id")


class ForkIn(BranchIn):
    session_id: str | None = Field(None, description="The new conversation's id (default: a new one)")


@router.post("/conversations/{conversation_id}/branch", tags=["branches"], summary="Show the branch through a message")
def conversation_branch(request: HttpRequest, conversation_id: str, payload: BranchIn) -> JsonResponse:
    _check_id(conversation_id)
    conversation = branches.branch_switch(
        conversation_id=conversation_id, message_id=payload.message_id, owner_id=_owner(request)
    )
    return JsonResponse(_conversation_body(conversation, request), json_dumps_params={"ensure_ascii": False})


@router.post("/conversations/{conversation_id}/fork", tags=["branches"], summary="Copy a path into a new conversation")
def conversation_fork(request: HttpRequest, conversation_id: str, payload: ForkIn) -> JsonResponse:
    _check_id(conversation_id)
    if payload.session_id is not None:
        _check_id(payload.session_id)
    fork = branches.conversation_fork(
        conversation_id=conversation_id,
        message_id=payload.message_id,
        new_id=payload.session_id,
        owner_id=_owner(request),
    )
    return JsonResponse(_conversation_body(fork, request), status=201, json_dumps_params={"ensure_ascii": False})


@router.get("/conversations/{conversation_id}/tree", tags=["branches"], summary="Every message of every branch")
def conversation_tree(request: HttpRequest, conversation_id: str) -> dict[str, Any]:
    _check_id(conversation_id)
    return branches.conversation_tree(conversation_id=conversation_id, owner_id=_owner(request))


def _conversation_body(conversation: Any, request: HttpRequest) -> dict[str, Any]:
    body = {
        "id": conversation.id,
        "title": _title(conversation),
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "model": conversation.model,
    }
    # A turn in progress is shown as its event log has it, up to `live.seq`: a client that
    # resumes after that seq misses nothing and is sent nothing twice.
    running = snapshot(conversation.id, client=_client(request))
    live = None
    if running is not None:
        # Before its first text, an empty assistant entry, as the frontend shows a turn it just
        # sent: the text that follows then goes into it after a reload too.
        live = (running.turn_id, running.display or [{"role": "assistant", "content": ""}])
        body["live"] = {"message_id": running.turn_id, "seq": running.seq}
    body["messages"] = selectors.conversation_display_messages(
        conversation_id=conversation.id, active_leaf=conversation.active_leaf_id, live=live
    )
    body["usage"] = usage_totals(conversation_id=conversation.id)
    waiting = approval_configured()  # else no turn can wait: no query
    body["pending_approvals"] = approvals.approvals_pending(conversation_id=conversation.id) if waiting else []
    return body


class ApprovalIn(Schema):
    approved: bool
    reason: str | None = Field(None, max_length=2000, description="Why (the model reads it when declined)")
    remember: Literal["once", "conversation"] = Field(
        "once", description="conversation: approve this tool's later calls in this conversation too"
    )


@router.post(
    "/conversations/{conversation_id}/approvals/{approval_id}",
    tags=["conversations"],
    response={202: dict[str, Any]},
    summary="Answer a tool approval request: the paused reply goes on",
)
async def approval_answer_view(
    request: HttpRequest, conversation_id: str, approval_id: str, payload: ApprovalIn
) -> tuple[int, dict[str, Any]]:
    _check_id(conversation_id)
    if payload.reason is not None and not text_storable(payload.reason):
        raise InvalidApprovalAnswer("The reason holds a NUL character or a lone UTF-16 surrogate.")
    await approval_answer(
        conversation_id=conversation_id,
        approval_id=approval_id,
        approved=payload.approved,
        reason=payload.reason or "",
        remember=payload.remember,
        owner_id=_owner(request),
    )
    return 202, {"approval_id": approval_id, "approved": payload.approved}


class UsageFilters(Schema):
    start: date | None = Field(None, alias="from", description="First day (UTC), inclusive")
    end: date | None = Field(None, alias="to", description="Last day (UTC), inclusive")
    conversation_id: str | None = None


@router.get("/usage", tags=["usage"], summary="Token and cost totals, by model and by day")
def usage(request: HttpRequest, filters: Query[UsageFilters]) -> dict[str, Any]:
    if filters.conversation_id is not None:
        _check_id(filters.conversation_id)
    report = usage_report(
        start=filters.start, end=filters.end, conversation_id=filters.conversation_id, user_id=_owner(request)
    )
    return {**report["totals"], "by_model": report["by_model"], "by_day": report["by_day"]}
