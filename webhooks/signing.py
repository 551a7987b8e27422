"""Standard Webhooks signatures (standardwebhooks.com): `v1,<base64 HMAC-SHA256>` of
`<webhook-id>.<webhook-timestamp>.<body>` with the secret's decoded bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
        "content-type": "application/json",
    }


def signature_valid(key: bytes, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check (the tests use it as one would): any `v1` signature of the header."""
    expected = signature(key, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, given) for given in headers["webhook-signature"].split())
