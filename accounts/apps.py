from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Access: API tokens and limits"
    default_auto_field = "django.db.models.BigAutoField"
