from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Access: API tokens and limits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.revocation import revocation_signals_connect

        revocation_signals_connect()
