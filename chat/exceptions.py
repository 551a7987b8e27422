"""Domain errors, each with the contract's error code. The API and the consumer map them to
responses and `error` events in one place each."""

from __future__ import annotations


class ChatError(Exception):
    code = "internal_error"
    retryable = False
    http_status = 500

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidConversationId(ChatError):
    code = "invalid_message"
    http_status = 400


class ConversationNotFound(ChatError):
    code = "not_found"
    http_status = 404


class TurnNotFound(ChatError):
    code = "unknown_message"
    http_status = 404


class ConversationBusy(ChatError):
    code = "busy"
    retryable = True
    http_status = 409


class ConversationExists(ChatError):
    code = "conversation_exists"
    http_status = 409


class UnknownMessage(ChatError):
    """A message id that is no message of the conversation (another user's among them)."""

    code = "unknown_message"
    http_status = 404


class NotAReply(ChatError):
    """A user message's id where an answer's (a turn's) is needed."""

    code = "not_a_reply"
    http_status = 400


class NotAUserMessage(ChatError):
    """An answer's id where a user message's is needed."""

    code = "not_a_user_message"
    http_status = 400


class UnknownModel(ChatError):
    code = "unknown_model"
    http_status = 400


class ModelUnavailable(ChatError):
    code = "model_unavailable"
    http_status = 400


class InvalidSearch(ChatError):
    code = "invalid_query"
    http_status = 400


class ImportRefused(ChatError):
    """An import file that is malformed, of an unknown shape, or too large."""

    code = "invalid_import"
    http_status = 400


class ImportTooLarge(ImportRefused):
    code = "import_too_large"
    http_status = 413


class UnknownApproval(ChatError):
    """No pending request of this conversation (and its owner) has this `approval_id`."""

    code = "unknown_approval"
    http_status = 404


class ApprovalAnswered(ChatError):
    """The request was answered already (another socket, a REST call, or its time-out)."""

    code = "approval_answered"
    http_status = 409


class InvalidApprovalAnswer(ChatError):
    code = "invalid_message"
    http_status = 400
