"""The model catalog: loading, usable models per key combination, prices and capabilities."""

from __future__ import annotations

import itertools

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from chat.catalog import catalog_load
from tests.conftest import catalog_file

MODELS = {
    "gpt-4o": {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000},
    "claude-haiku-4-5": {"provider": "anthropic", "name": "Claude Haiku 4.5", "maxTokens": 200000},
    "gemini-2.5-flash": {"provider": "google", "name": "Gemini 2.5 Flash", "maxTokens": 1048576},
}


def test_the_shipped_catalog_loads_with_prices_for_every_model():
    from django.conf import settings

    catalog = catalog_load(settings.MODELS_FILE)
    assert catalog.default_model in catalog.models
    assert {m.provider for m in catalog.models.values()} == {"openai", "anthropic", "google"}
    for model in catalog.models.values():
        assert model.price is not None, model.id
        assert model.supports_tools, model.id


def test_missing_file(tmp_path):
    with pytest.raises(ImproperlyConfigured, match=r"models\.json does not exist"):
        catalog_load(tmp_path / "models.json")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{oops", "is not valid JSON"),
        ('{"models": {}}', "defaultModel: Field required"),
        (
            '{"defaultModel": "x", "models": {"y": {"provider": "openai", "name": "Y", "maxTokens": 1}}}',
            "defaultModel 'x' is not one of the models",
        ),
        (
            '{"defaultModel": "y", "models": {"y": {"provider": "acme", "name": "Y", "maxTokens": 1}}}',
            "models.y.provider",
        ),
        (
            '{"defaultModel": "y", "models": {"y": {"provider": "openai", "name": "Y", "maxTokens": -5}}}',
            "models.y.maxTokens",
        ),
        (
            '{"defaultModel": "y", "models": {"y": {"provider": "openai_compatible", "name": "Y", "maxTokens": 9}}}',
            "needs a base_url",
        ),
    ],
)
def test_malformed_catalog_names_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "models.json"
    path.write_text(content)
    with pytest.raises(ImproperlyConfigured) as caught:
        catalog_load(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "google": "GOOGLE_API_KEY"}


@pytest.mark.parametrize("configured", [set(c) for n in range(4) for c in itertools.combinations(KEYS, n)])
def test_models_lists_exactly_the_usable_ones(client, tmp_path, configured):
    keys = {setting: ("k-" + provider if provider in configured else None) for provider, setting in KEYS.items()}
    with override_settings(MODELS_FILE=catalog_file(tmp_path, MODELS, "gpt-4o"), **keys):
        body = client.get("/models").json()
    assert {body["models"][m]["provider"] for m in body["models"]} == configured
    assert body["providers"] == {p: p in configured for p in KEYS} | {"openai_compatible": False, "local": False}
    if "openai" in configured or not configured:
        assert body["defaultModel"] == "gpt-4o"  # the catalog's default, usable or not
    else:
        assert body["defaultModel"] in body["models"]


def test_keyless_local_endpoint_is_usable(client, tmp_path):
    models = {
        **MODELS,
        "llama3.2": {
            "provider": "openai_compatible",
            "name": "Llama (Ollama)",
            "maxTokens": 131072,
            "base_url": "http://127.0.0.1:11434/v1",
        },
    }
    with override_settings(
        MODELS_FILE=catalog_file(tmp_path, models, "gpt-4o"),
        OPENAI_API_KEY=None,
        ANTHROPIC_API_KEY=None,
        GOOGLE_API_KEY=None,
    ):
        body = client.get("/models").json()
    assert list(body["models"]) == ["llama3.2"] and body["defaultModel"] == "llama3.2"
    assert body["providers"]["openai_compatible"] is True
    assert body["models"]["llama3.2"]["inputCostPerMillion"] is None  # no known price


def test_models_carry_capabilities_and_prices(client, tmp_path):
    models = {**MODELS, "gpt-4o": {**MODELS["gpt-4o"], "inputCostPerMillion": 1.0, "outputCostPerMillion": 2.0}}
    with override_settings(
        MODELS_FILE=catalog_file(tmp_path, models, "gpt-4o"),
        OPENAI_API_KEY="k",
        ANTHROPIC_API_KEY="k",
        GOOGLE_API_KEY="k",
    ):
        body = client.get("/models").json()
    haiku = body["models"]["claude-haiku-4-5"]
    assert haiku == {
        "provider": "anthropic",
        "name": "Claude Haiku 4.5",
        "maxTokens": 200000,
        "supportsTools": True,
        "supportsVision": True,
        "inputCostPerMillion": 1.0,
        "outputCostPerMillion": 5.0,
        "cachedInputCostPerMillion": 0.1,
    }
    gpt = body["models"]["gpt-4o"]
    assert (gpt["inputCostPerMillion"], gpt["outputCostPerMillion"], gpt["cachedInputCostPerMillion"]) == (
        1.0,
        2.0,
        1.0,
    )
    assert body["models"]["gemini-2.5-flash"]["inputCostPerMillion"] == 0.3


def test_a_model_newer_than_the_price_map_is_offered_tools_unless_the_catalog_says_not(client, tmp_path):
    models = {
        "gpt-9-turbo": {"provider": "openai", "name": "GPT-9", "maxTokens": 400000},
        "gpt-9-plain": {"provider": "openai", "name": "GPT-9 plain", "maxTokens": 400000, "supportsTools": False},
    }
    with override_settings(MODELS_FILE=catalog_file(tmp_path, models, "gpt-9-turbo"), OPENAI_API_KEY="k"):
        listed = client.get("/models").json()["models"]
    assert listed["gpt-9-turbo"]["supportsTools"] is True
    assert listed["gpt-9-turbo"]["supportsVision"] is False
    assert listed["gpt-9-plain"]["supportsTools"] is False
