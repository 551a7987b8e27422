"""The model catalog: which models exist, which are usable with the configured keys, and
what they cost.

The file has the shape of the frontend's `models.json` (`defaultModel`, `models: {id:
{provider, name, maxTokens}}`); prices and capabilities come offline from LiteLLM's bundled
model map unless the entry overrides them.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chat.local_model import LOCAL_MODEL_ID, bundled_model_file, local_model_file

Provider = Literal["openai", "anthropic", "google", "openai_compatible", "local"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic", "google", "openai_compatible", "local")
# LiteLLM's route prefix for each provider.
_LITELLM_PREFIX: dict[Provider, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gemini",
    "openai_compatible": "openai",
    "local": "local",
}
PER_MILLION = 1_000_000


class CatalogEntry(BaseModel):
    """One model in the catalog file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: Provider
    name: str
    max_tokens: int = Field(alias="maxTokens", gt=0)
    # The provider's own model name, when it differs from the catalog id.
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    input_cost_per_million: float | None = Field(default=None, alias="inputCostPerMillion", ge=0)
    output_cost_per_million: float | None = Field(default=None, alias="outputCostPerMillion", ge=0)
    cached_input_cost_per_million: float | None = Field(default=None, alias="cachedInputCostPerMillion", ge=0)
    supports_tools: bool | None = Field(default=None, alias="supportsTools")
    supports_vision: bool | None = Field(default=None, alias="supportsVision")
    description: str | None = None  # what to expect of the model, for people choosing one

    @model_validator(mode="after")
    def _compatible_needs_url(self) -> CatalogEntry:
        if self.provider == "openai_compatible" and not self.base_url:
            raise ValueError("an openai_compatible model needs a base_url")
        if self.provider == "local":
            raise ValueError("the local model is set with LOCAL_MODEL and LOCAL_MODEL_PATH, not in the catalog")
        return self


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    default_model: str = Field(alias="defaultModel")
    models: dict[str, CatalogEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_listed(self) -> CatalogFile:
        if self.default_model not in self.models:
            raise ValueError(f"defaultModel {self.default_model!r} is not one of the models")
        return self


@dataclass(frozen=True, kw_only=True)
class Price:
    """US dollars per token."""

    input: float
    output: float
    cached_input: float


@dataclass(frozen=True, kw_only=True)
class CatalogModel:
    id: str
    provider: Provider
    name: str
    max_tokens: int
    provider_model: str
    litellm_model: str
    base_url: str | None
    entry_api_key: str | None
    entry: CatalogEntry = field(compare=False)  # a pydantic model: left out of eq and hash

    # Price and capabilities: the entry's, else LiteLLM's map's. Looked up on first use (the
    # warm-up's, in the background), not at start-up: parsing the map takes ~0.2 s.
    @cached_property
    def _known(self) -> dict[str, object]:
        return _model_map_entry(self.litellm_model, self.provider_model)

    @cached_property
    def price(self) -> Price | None:
        return _price(self.entry, self._known)

    @cached_property
    def supports_tools(self) -> bool:
        # A chat model newer than LiteLLM's map almost certainly calls tools; vision is rarer.
        return _flag(self.entry.supports_tools, self._known, "supports_function_calling", default=True)

    @cached_property
    def max_output_tokens(self) -> int:
        """The most tokens one reply may hold (LiteLLM's map), else the context window: what a
        spending reservation assumes a request may cost (accounts.budget)."""
        known = self._known.get("max_output_tokens")
        return min(known, self.max_tokens) if isinstance(known, int) and known > 0 else self.max_tokens

    @cached_property
    def supports_vision(self) -> bool:
        return _flag(self.entry.supports_vision, self._known, "supports_vision", default=False)

    @property
    def description(self) -> str | None:
        return self.entry.description

    @property
    def api_key(self) -> str | None:
        return self.entry_api_key or provider_api_key(self.provider)

    @property
    def usable(self) -> bool:
        # A local OpenAI-compatible server (Ollama, llama.cpp, vLLM) needs no key; the local
        # model is in the catalog only when it can run.
        return self.provider in ("openai_compatible", "local") or self.api_key is not None

    def as_public_dict(self) -> dict[str, object]:
        price = self.price
        return {
            "provider": self.provider,
            "name": self.name,
            "maxTokens": self.max_tokens,
            "supportsTools": self.supports_tools,
            "supportsVision": self.supports_vision,
            "inputCostPerMillion": _per_million(price.input if price else None),
            "outputCostPerMillion": _per_million(price.output if price else None),
            "cachedInputCostPerMillion": _per_million(price.cached_input if price else None),
        } | ({"description": self.description} if self.description else {})


@dataclass(frozen=True, kw_only=True)
class Catalog:
    path: Path
    default_model: str
    models: dict[str, CatalogModel]

    def get(self, model_id: str) -> CatalogModel | None:
        return self.models.get(model_id)

    def get_or_default(self, model_id: str) -> CatalogModel | None:
        """A stored turn's model, or the default when the catalog no longer lists it."""
        return self.models.get(model_id) or self.models.get(self.usable_default())

    def usable_models(self) -> dict[str, CatalogModel]:
        return {key: model for key, model in self.models.items() if model.usable}

    def usable_default(self) -> str:
        """The catalog's default when usable, else the first usable model, else the default."""
        usable = self.usable_models()
        if self.default_model in usable or not usable:
            return self.default_model
        return next(iter(usable))


def provider_api_key(provider: Provider) -> str | None:
    keys: dict[Provider, str | None] = {
        "openai": settings.OPENAI_API_KEY,
        "anthropic": settings.ANTHROPIC_API_KEY,
        "google": settings.GOOGLE_API_KEY,
        "openai_compatible": None,
        "local": None,
    }
    return keys[provider]


def provider_base_url(model: CatalogModel) -> str | None:
    overrides: dict[Provider, str | None] = {
        "openai": settings.OPENAI_BASE_URL,
        "anthropic": settings.ANTHROPIC_BASE_URL,
        "google": settings.GEMINI_BASE_URL,
        "openai_compatible": None,
        "local": None,
    }
    return model.base_url or overrides[model.provider]


def catalog_get() -> Catalog:
    """The catalog named by `MODELS_FILE` (parsed once per path), with the local model last
    when it can run: the default only when no model of the file is usable."""
    catalog = catalog_load(Path(settings.MODELS_FILE))
    path = local_model_file()
    if path is None:
        return catalog
    local = local_catalog_model(path, settings.LOCAL_MODEL_CONTEXT)
    return replace(catalog, models={**catalog.models, local.id: local})


@lru_cache(maxsize=8)
def catalog_load(path: Path) -> Catalog:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ImproperlyConfigured(f"Model catalog {path} does not exist (MODELS_FILE)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImproperlyConfigured(f"Model catalog {path} is not valid JSON: {exc}") from exc
    try:
        parsed = CatalogFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ImproperlyConfigured(f"Model catalog {path} is invalid: {problems}") from exc
    models = {key: _resolve(key, entry) for key, entry in parsed.models.items()}
    return Catalog(path=path, default_model=parsed.default_model, models=models)


def _resolve(model_id: str, entry: CatalogEntry) -> CatalogModel:
    provider_model = entry.model or model_id
    return CatalogModel(
        id=model_id,
        provider=entry.provider,
        name=entry.name,
        max_tokens=entry.max_tokens,
        provider_model=provider_model,
        litellm_model=f"{_LITELLM_PREFIX[entry.provider]}/{provider_model}",
        base_url=entry.base_url,
        entry_api_key=entry.api_key,
        entry=entry,
    )


@lru_cache(maxsize=1)
def _model_map() -> dict[str, dict[str, object]]:
    """LiteLLM's bundled price and capability map, read from its file: what `litellm.model_cost`
    holds with LITELLM_LOCAL_MODEL_COST_MAP, without importing LiteLLM (seconds of start-up)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(spec.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _model_map_entry(litellm_model: str, provider_model: str) -> dict[str, object]:
    known = _model_map()
    return known.get(litellm_model) or known.get(provider_model) or {}


def _price(entry: CatalogEntry, known: dict[str, object]) -> Price | None:
    input_price = _override(entry.input_cost_per_million, known.get("input_cost_per_token"))
    output_price = _override(entry.output_cost_per_million, known.get("output_cost_per_token"))
    if input_price is None or output_price is None:
        return None  # a model with no known price records tokens and a null cost
    cached = _override(entry.cached_input_cost_per_million, None)
    if cached is None and entry.input_cost_per_million is None:
        cached = _as_float(known.get("cache_read_input_token_cost"))
    return Price(input=input_price, output=output_price, cached_input=cached if cached is not None else input_price)


def _override(per_million: float | None, per_token: object) -> float | None:
    if per_million is not None:
        return per_million / PER_MILLION
    return _as_float(per_token)


def _as_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _flag(override: bool | None, known: dict[str, object], key: str, *, default: bool) -> bool:
    if override is not None:
        return override
    return bool(known.get(key, default))


def _per_million(per_token: float | None) -> float | None:
    return None if per_token is None else round(per_token * PER_MILLION, 6)


LOCAL_DESCRIPTION = (
    "Runs on this server with llama.cpp: no key, no network, no cost. {size} Expect short, simple "
    "answers that are often wrong on facts; it seldom calls tools and may get their arguments "
    "wrong (the tool then says what was wrong). Add a provider key for a capable model."
)


@lru_cache(maxsize=8)
def local_catalog_model(path: Path, context: int) -> CatalogModel:
    bundled = path == bundled_model_file()
    name = "SmolLM2 135M (local)" if bundled else f"{path.stem} (local)"
    size = "A very small model (135 million parameters)." if bundled else "A model from a local GGUF file."
    # Not validated: an entry of a catalog file may not name the local provider (it is set up
    # with LOCAL_MODEL and LOCAL_MODEL_PATH); this one is the server's own.
    entry = CatalogEntry.model_construct(
        provider="local",
        name=name,
        max_tokens=context,
        input_cost_per_million=0.0,
        output_cost_per_million=0.0,
        cached_input_cost_per_million=0.0,
        supports_tools=True,
        supports_vision=False,
        description=LOCAL_DESCRIPTION.format(size=size),
    )
    return CatalogModel(
        id=LOCAL_MODEL_ID,
        provider="local",
        name=name,
        max_tokens=context,
        provider_model=path.stem,
        litellm_model=f"local/{path.stem}",
        base_url=None,
        entry_api_key=None,
        entry=entry,
    )
