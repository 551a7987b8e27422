"""`manage.py index_knowledge`: read every note of KNOWLEDGE_DIRS again, with a progress bar.
(The server keeps the index fresh by itself; this is for a first index of a large folder, or
after changing how notes are indexed. With KNOWLEDGE_SEMANTIC it then embeds every passage that
has no vector yet, with a second bar.)"""

from __future__ import annotations

import time
from collections.abc import Callable
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
        report = index_update(rebuild=not options["changed"], progress=self._bar("files"))
        self.stdout.write(
            f"\n{report.added} added, {report.updated} updated, {report.removed} removed, "
            f"{report.unchanged} unchanged, {report.skipped} skipped in {report.seconds:.1f} s"
        )
        if settings.KNOWLEDGE_SEMANTIC:
            # The slow part (about 40 ms of CPU a passage): the server would do it in the
            # background, finding new notes by their words until then.
            from knowledge.semantic.vectors import vectors_update

            started = time.monotonic()
            embedded = vectors_update(progress=self._bar("passages embedded"))
            self.stdout.write(f"\n{embedded} passages embedded in {time.monotonic() - started:.1f} s")

    def _bar(self, unit: str) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            filled = BAR_WIDTH * done // max(total, 1)
            self.stdout.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {unit}", ending="")
            self.stdout.flush()

        return progress
