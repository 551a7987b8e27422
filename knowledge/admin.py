"""The admin lists the indexed notes with their passage counts, and how many of those passages
have a vector (KNOWLEDGE_SEMANTIC embeds them in the background); the index is rebuilt from the
files, never edited here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from knowledge.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("path", "root", "title", "chunk_count", "size", "indexed_at")
    list_filter = ("root",)
    search_fields = ("path", "title")
    readonly_fields = ("root", "path", "title", "size", "mtime_ns", "chunk_count", "indexed_at")

    def get_list_display(self, request: HttpRequest) -> Sequence[str]:
        if not settings.KNOWLEDGE_SEMANTIC:
            return self.list_display
        return (*self.list_display[:4], "embedded", *self.list_display[4:])

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        queryset = super().get_queryset(request)
        if settings.KNOWLEDGE_SEMANTIC:
            queryset = queryset.annotate(embedded_count=Count("chunks__vector"))
        return queryset

    @admin.display(description="passages embedded", ordering="embedded_count")
    def embedded(self, document: Document) -> int:
        return document.embedded_count  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
