"""The admin's usage page: cost and tokens per day and model as inline SVG charts, and the
costliest conversations; in Django's test client here, in a real browser in
test_usage_page_browser.py."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from observability.usage import PALETTE
from tests.observability.seed_usage import ADMIN, PASSWORD, seed

pytestmark = pytest.mark.django_db
PAGE = "/admin/observability/usagechart/"


@pytest.fixture
def admin_client() -> Client:
    seed()
    client = Client()
    assert client.login(username=ADMIN, password=PASSWORD)
    return client


def bars(html: str, chart: str) -> list[dict[str, str]]:
    svg = re.search(rf'<svg[^>]*data-value="{chart}".*?</svg>', html, re.S).group(0)
    return [dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag)) for tag in re.findall(r"<rect [^>]*>", svg)]


def test_cost_per_day_is_stacked_by_model_in_proportion(admin_client):
    html = admin_client.get(PAGE).content.decode()
    cost = bars(html, "cost")
    assert {(bar["data-model"], bar["fill"]) for bar in cost} == {
        ("gpt-4o", PALETTE[0]),  # the costliest model first
        ("claude-sonnet-4-5", PALETTE[1]),
    }
    today = [bar for bar in cost if bar["data-day"] == max(b["data-day"] for b in cost)]
    heights = {bar["data-model"]: float(bar["height"]) for bar in today}
    assert heights["gpt-4o"] == pytest.approx(3 * heights["claude-sonnet-4-5"], rel=0.01)  # $0.90 against $0.30
    assert len({bar["data-day"] for bar in cost}) == 3
    assert "$1.45" in html.replace("$1.4500", "$1.45")  # the period's total


def test_tokens_chart_and_the_costliest_conversations_first(admin_client):
    html = admin_client.get(PAGE).content.decode()
    tokens = bars(html, "tokens")
    tallest = max(tokens, key=lambda bar: float(bar["height"]))
    assert tallest["data-model"] == "gpt-4o"  # 93,000 tokens today
    table = re.search(r'<table id="usage-conversations">.*?</table>', html, re.S).group(0)
    assert re.findall(r"conv-(\w+)</a>", table) == ["big", "mid", "small"]


def test_a_period_without_requests_says_so(admin_client):
    from chat.models import UsageRecord

    UsageRecord.objects.all().delete()
    html = admin_client.get(PAGE + "?days=7").content.decode()
    assert 'id="usage-empty"' in html and "<rect" not in html


def test_the_page_is_for_admin_users_only(client):
    answer = client.get(PAGE)
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
