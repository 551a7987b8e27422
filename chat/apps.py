from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from chat.catalog import Catalog


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import catalog

        # A broken catalog is a start-up error naming the file, not a traceback at the first
        # request.
        models = catalog.catalog_get()
        _title_model_check(models)


def _title_model_check(models: Catalog) -> None:
    """TITLE_MODEL names a model of the catalog (or `none`): a typo is a start-up error."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from chat.local_model import LOCAL_MODEL_ID

    chosen = settings.TITLE_MODEL
    if chosen is None or chosen.lower() == "none" or chosen == LOCAL_MODEL_ID:
        return
    if models.get(chosen) is None:
        raise ImproperlyConfigured(
            f"TITLE_MODEL={chosen!r} is not a model of the catalog ({settings.MODELS_FILE}); "
            "use one of its ids, or none."
        )
