"""Who is calling: the client's address and, by AUTH_MODE, the credentials that admit it.

- `none`: no credentials; only loopback clients (the address as the ASGI server reports it).
- `token`: one shared secret, `Authorization: Bearer <token>` or, on a WebSocket (browsers
  cannot set its headers), the subprotocol pair `bearer, <token>`.
- `django`: a Django user, by session (the admin's login) or by a personal API token, sent the
  same two ways.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

from django.conf import settings

BEARER = "bearer"
# Headers a reverse proxy adds: a request that carries one did not come from a local client,
# whatever address the proxy connected from.
FORWARDED_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-real-ip"})
LOCAL = "local"  # the address of a client the server names none of (a UNIX socket, in-process)
UNAUTHORIZED = (
    "Authentication required: send 'Authorization: Bearer <token>' (on a WebSocket, the subprotocols "
    "'bearer, <token>')."
)


@dataclass(frozen=True, kw_only=True)
class Identity:
    address: str
    user_id: int | None = None  # AUTH_MODE=django only
    token_id: int | None = None  # the personal token it came with (AUTH_MODE=django), if any
    via_subprotocol: bool = False  # the WebSocket handshake must answer with `bearer`

    @property
    def owner_id(self) -> int | None:
        """Conversations are scoped to a user in django mode; otherwise one owner has them all."""
        return self.user_id

    @property
    def limit_key(self) -> str:
        return f"user:{self.user_id}" if self.user_id is not None else f"addr:{address_group(self.address)}"


class Refusal(Exception):
    """Not admitted: 401 (no valid credentials), 403 (not a loopback client in `none` mode) or
    429 (too many failed credentials from this address lately)."""

    def __init__(self, status: int, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after  # status 429: too many failed credentials lately


def client_address(client: Any) -> str:
    if not client or not client[0]:
        return LOCAL
    return str(client[0])


def address_group(address: str) -> str:
    """What per-address limits count: an IPv4 address (an IPv4-mapped IPv6 one as the IPv4
    address it is), or the IPv6 network of RATE_LIMIT_IPV6_PREFIX bits around an IPv6 one (a
    client is routinely handed a whole /64, and would otherwise have 2**64 addresses to spread
    over)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope id (`fe80::1%eth0`) is no part of it
    except ValueError:
        return address  # `local`, or a name a test server reports
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, settings.RATE_LIMIT_IPV6_PREFIX), strict=False))
    return str(ip)


def is_loopback(address: str) -> bool:
    if address == LOCAL:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def credentials(headers: dict[str, str], subprotocols: list[str]) -> tuple[str | None, bool]:
    """The bearer token presented, and whether it came as a subprotocol."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == BEARER and value.strip():
        return value.strip(), False
    if len(subprotocols) >= 2 and subprotocols[0].lower() == BEARER:
        return subprotocols[1], True
    return None, False


def local_only(address: str, headers: dict[str, str]) -> None:
    """AUTH_MODE=none: serve loopback clients that did not come through a proxy."""
    if not is_loopback(address) or FORWARDED_HEADERS & headers.keys():
        raise Refusal(
            403,
            "This server only serves its own machine (AUTH_MODE=none). To serve other clients, set "
            "AUTH_MODE=token (with AUTH_TOKEN) or AUTH_MODE=django; see docs/security.md.",
        )


def shared_token_valid(presented: str | None) -> bool:
    expected = settings.AUTH_TOKEN
    if presented is None or not expected:
        return False
    # Constant time: the comparison must not tell how many leading characters were right.
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())
