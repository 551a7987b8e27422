"""The admin lists the indexed notes with their passage counts; the index is rebuilt from the
files, never edited here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from knowledge.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("path", "root", "title", "chunk_count", "size", "indexed_at")
    list_filter = ("root",)
    search_fields = ("path", "title")
    readonly_fields = ("root", "path", "title", "size", "mtime_ns", "chunk_count", "indexed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
