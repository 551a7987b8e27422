"""Revoking an identity closes its open sockets, in every worker (AUTH_MODE=django).

A socket of a Django user joins two channel-layer groups at its handshake: its user's and,
when it came with a personal token, its token's. Deleting the token, or deactivating or
deleting the user, sends `identity.revoked` to the group once the transaction commits; each
socket in it is sent a lone `unauthorized` error and closed with 4401, and a deactivated
user's running turn is cancelled. The channel layer is Redis (channels-redis) when REDIS_URL
is set, so this reaches every worker; in memory otherwise (one process).

A message can be lost (Redis down at that moment, a socket older than channels-redis' one-day
group expiry), so a chat frame also checks the identity again: one indexed query per turn.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from accounts.identity import Identity
from accounts.models import ApiToken
from chat.store.db import db_async

logger = logging.getLogger("accounts")
REVOKED = "identity.revoked"  # the consumer's handler: `identity_revoked`


def identity_groups(identity: Identity) -> list[str]:
    """The groups a socket of `identity` listens on; none when nothing can revoke it (the
    shared token of `token` mode changes only with a restart)."""
    groups = []
    if identity.user_id is not None:
        groups.append(f"identity.user.{identity.user_id}")
    if identity.token_id is not None:
        groups.append(f"identity.token.{identity.token_id}")
    return groups


def identity_current(identity: Identity) -> bool:
    """Whether the identity a socket was admitted with would still be admitted."""
    if identity.user_id is None:
        return True
    if identity.token_id is not None:
        return ApiToken.objects.filter(pk=identity.token_id, user__is_active=True).exists()
    return get_user_model().objects.filter(pk=identity.user_id, is_active=True).exists()


aidentity_current = db_async(identity_current)


async def revocation_listen(consumer: Any, identity: Identity) -> None:
    for group in identity_groups(identity):
        try:
            await consumer.channel_layer.group_add(group, consumer.channel_name)
        except Exception as exc:  # noqa: BLE001 - the socket works; the frame re-check still refuses
            logger.warning("socket not registered for revocation: %r", exc, extra={"event": "revocation_unavailable"})


async def revocation_unlisten(consumer: Any, identity: Identity) -> None:
    if getattr(consumer, "channel_layer", None) is None:
        return
    for group in identity_groups(identity):
        try:
            await consumer.channel_layer.group_discard(group, consumer.channel_name)
        except Exception as exc:  # noqa: BLE001 - the membership expires on its own
            logger.warning("socket not unregistered: %r", exc, extra={"event": "revocation_unavailable"})


def _announce(group: str, *, user: bool) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": REVOKED, "user": user})
    except Exception as exc:  # noqa: BLE001 - the revocation itself is done; sockets re-check on chat
        logger.warning("revocation not announced: %r", exc, extra={"event": "revocation_unavailable"})


def _token_deleted(sender: Any, instance: ApiToken, **kwargs: Any) -> None:
    group = f"identity.token.{instance.pk}"
    transaction.on_commit(lambda: _announce(group, user=False))


def _user_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    if kwargs.get("signal") is post_save and instance.is_active:
        return
    group = f"identity.user.{instance.pk}"
    transaction.on_commit(lambda: _announce(group, user=True))


def revocation_signals_connect() -> None:
    """From AccountsConfig.ready()."""
    user_model = get_user_model()
    post_delete.connect(_token_deleted, sender=ApiToken, dispatch_uid="accounts.token_revoked")
    post_save.connect(_user_changed, sender=user_model, dispatch_uid="accounts.user_deactivated")
    post_delete.connect(_user_changed, sender=user_model, dispatch_uid="accounts.user_deleted")
