from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import catalog

        # A broken catalog is a start-up error naming the file, not a traceback at the first
        # request.
        catalog.catalog_get()
