"""`manage.py index_knowledge`: read every note of KNOWLEDGE_DIRS again, with a progress bar.
(The server keeps the index fresh by itself; this is for a first index of a large folder, or
after changing how notes are indexed.)"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.indexer import index_update

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Rebuild the knowledge base index from the files of KNOWLEDGE_DIRS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--changed", action="store_true", help="only read new and changed files (what the server does)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.KNOWLEDGE_DIRS:
            raise CommandError("KNOWLEDGE_DIRS is not set: there is nothing to index.")
        report = index_update(rebuild=not options["changed"], progress=self._progress)
        self.stdout.write(
            f"\n{report.added} added, {report.updated} updated, {report.removed} removed, "
            f"{report.unchanged} unchanged, {report.skipped} skipped in {report.seconds:.1f} s"
        )

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        self.stdout.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} files", ending="")
        self.stdout.flush()
