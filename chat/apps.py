from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import set_tracing_disabled
        from django.conf import settings

        from chat import catalog

        # A broken catalog is a start-up error naming the file, not a traceback at the first
        # request.
        catalog.catalog_get()
        # The SDK exports traces to OpenAI by default: off unless the operator asks for it.
        set_tracing_disabled(not settings.AGENTS_TRACING)
