"""The admin lists the indexed notes with their passage counts, and how many of those passages
have a vector (KNOWLEDGE_SEMANTIC embeds them in the background); the index is rebuilt from the
files, never edited here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from knowledge.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("path", "root", "title", "chunk_count", "embedded", "size", "indexed_at")
    list_filter = ("root",)
    search_fields = ("path", "title")
    readonly_fields = ("root", "path", "title", "size", "mtime_ns", "chunk_count", "indexed_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return super().get_queryset(request).annotate(embedded_count=Count("chunks__vector"))

    @admin.display(description="passages embedded", ordering="embedded_count")
    def embedded(self, document: Document) -> int:
        return document.embedded_count  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
