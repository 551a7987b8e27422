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
