"""Personal API tokens: made once (shown once), stored as a digest, revoked by deleting."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import ApiToken

TOKEN_BYTES = 32
# `last_used_at` is a hint for the admin: written at most this often per token, not per request.
LAST_USED_PRECISION = timedelta(minutes=5)


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user: Any, name: str = "") -> tuple[ApiToken, str]:
    """A new token for `user`; the raw value exists only in the return value."""
    raw = "dt_" + secrets.token_urlsafe(TOKEN_BYTES)
    token = ApiToken.objects.create(user=user, name=name, digest=token_digest(raw), prefix=raw[:8])
    return token, raw


def token_find(raw: str) -> ApiToken | None:
    """The token of a raw value, if its user is active (its `user` loaded), or None."""
    token = ApiToken.objects.select_related("user").filter(digest=token_digest(raw)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def user_by_name(username: str) -> Any:
    return get_user_model().objects.get_by_natural_key(username)
