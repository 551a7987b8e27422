"""A ledger to chart: two models over three days, three conversations, and a superuser.

Run in the server's environment (`python -m tests.observability.seed_usage`) for the browser
test, or called in-process by the page's own test."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

ADMIN, PASSWORD = "admin", "a-long-test-password-1"
# (days ago, model, conversation, cost, input, output)
LEDGER = (
    (0, "gpt-4o", "big", "0.90", 90_000, 3_000),
    (0, "claude-sonnet-4-5", "mid", "0.30", 20_000, 2_000),
    (1, "gpt-4o", "mid", "0.20", 15_000, 1_000),
    (2, "claude-sonnet-4-5", "small", "0.05", 4_000, 500),
)


def seed() -> None:
    # Imported here: run as a script, Django is set up only below.
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from chat.models import Conversation, UsageRecord

    get_user_model().objects.create_superuser(ADMIN, "admin@example.com", PASSWORD)
    for name in ("big", "mid", "small"):
        Conversation.objects.create(id=f"conv-{name}", title=f"The {name} one", model="gpt-4o")
    now = timezone.now()
    for days_ago, model, conversation, cost, input_tokens, output_tokens in LEDGER:
        row = UsageRecord.objects.create(
            conversation_id=f"conv-{conversation}",
            model=model,
            provider="openai" if model.startswith("gpt") else "anthropic",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=Decimal(cost),
        )
        UsageRecord.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=days_ago))


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dreamytin.settings")

    django.setup()
    seed()
