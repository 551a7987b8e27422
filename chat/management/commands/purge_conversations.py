"""`manage.py purge_conversations`: delete the conversations untouched for RETENTION_DAYS (or
--days) days, as the server does every hour; --dry-run only counts them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.retention import conversations_purge


class Command(BaseCommand):
    help = "Delete conversations untouched for RETENTION_DAYS days (the usage ledger keeps its rows)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="instead of RETENTION_DAYS")
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else settings.RETENTION_DAYS
        if days is None:
            raise CommandError("RETENTION_DAYS is not set (conversations are kept for ever); pass --days N.")
        if days < 1:
            raise CommandError(f"--days must be at least 1, got {days}.")
        count = conversations_purge(days=days, dry_run=options["dry_run"])
        verb = "would be deleted" if options["dry_run"] else "deleted"
        self.stdout.write(f"{count} conversations untouched for {days} days {verb}.")
