from django.contrib import admin

from accounts.models import ApiToken, UserLimits


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Listed and revoked (deleted) here; made with `manage.py create_token`, which shows the
    value once."""

    list_display = ("prefix", "user", "name", "created_at", "last_used_at")
    list_filter = ("user",)
    search_fields = ("user__username", "name", "prefix")
    readonly_fields = ("user", "prefix", "created_at", "last_used_at")
    fields = ("user", "name", "prefix", "created_at", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    list_display = ("user", "budget_usd_per_day")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
