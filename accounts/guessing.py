"""Failed credentials, counted: RATE_LIMIT_LOGIN_FAILURES per client address (an IPv6 client by
its network, accounts.identity.address_group) and per user name, for the admin's login and for
bearer tokens. Past it, the next attempts are refused (429) before any credential is checked,
until the window ends; successes are not counted.

In Redis when REDIS_URL is set (every worker shares the count), else in the process
(accounts.limits)."""

from __future__ import annotations

from django.conf import settings

from accounts.identity import address_group
from accounts.limits import Verdict, rate_hit, rate_reached

NAME = "login_failures"
MAX_USERNAME_CHARS = 150  # Django's own limit on a user name


def _keys(address: str, username: str | None) -> list[str]:
    keys = [f"addr:{address_group(address)}"]
    if username:
        keys.append(f"name:{username.strip().lower()[:MAX_USERNAME_CHARS]}")
    return keys


async def guessing_refused(*, address: str, username: str | None = None) -> Verdict:
    """Refused (allowed False) when the address or the user name failed too often lately."""
    rate = settings.RATE_LIMIT_LOGIN_FAILURES
    if rate is None:
        return Verdict(True)
    for key in _keys(address, username):
        verdict = await rate_reached(NAME, key, rate)
        if not verdict.allowed:
            return verdict
    return Verdict(True)


async def guess_failed(*, address: str, username: str | None = None) -> None:
    rate = settings.RATE_LIMIT_LOGIN_FAILURES
    if rate is None:
        return
    for key in _keys(address, username):
        await rate_hit(NAME, key, rate)
