from chat.models import UsageRecord


class UsageChart(UsageRecord):
    """The usage page's entry in the admin (no table of its own: a proxy of the ledger)."""

    class Meta:
        proxy = True
        verbose_name = "usage chart"
        verbose_name_plural = "usage charts"
