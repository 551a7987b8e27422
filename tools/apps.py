from django.apps import AppConfig
from django.core import checks


class ToolsConfig(AppConfig):
    name = "tools"
    verbose_name = "Agent tools"

    def ready(self) -> None:
        from tools.checks import check_tools
        from tools.registry import registry

        registry.autodiscover()
        checks.register(check_tools, "tools")
