"""Personal API tokens (AUTH_MODE=django) and per-user limits.

A token is stored only as its SHA-256: it is 256 random bits, so a fast hash is as safe as a
slow one (nothing to guess), and a lookup by digest compares no secret byte by byte.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, default="")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters, so the owner can tell tokens apart in the admin.
    prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class UserLimits(models.Model):
    """A user's own limits; absent or empty fields fall back to the settings."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="limits")
    budget_usd_per_day = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="US dollars a day (UTC) this user may spend; empty: BUDGET_USD_PER_DAY.",
    )

    class Meta:
        verbose_name = "user limits"
        verbose_name_plural = "user limits"

    def __str__(self) -> str:
        return f"limits of {self.user}"


class BudgetHold(models.Model):
    """Spending reserved for a turn before its provider is called (accounts.budget): it counts
    against the day's budget while the turn streams, less what the turn has recorded so far."""

    turn = models.OneToOneField("chat.Turn", on_delete=models.CASCADE, related_name="budget_hold")
    # Whose budget (AUTH_MODE=django); null: the server's.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True)
    amount_usd = models.DecimalField(max_digits=16, decimal_places=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "budget hold"

    def __str__(self) -> str:
        return f"${self.amount_usd} for turn {self.turn_id}"
