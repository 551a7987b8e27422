"""The private library APIs the kept fast paths (chat.openai_client, chat.store.sql) rely on still have the shape
they were written against, in the pinned releases.

An upgrade that moves one would otherwise go unnoticed, or show up far from its cause: the
client's override would never be called (every chunk built the slow way again), or the SQL
path would prepare values as the ORM no longer does.
Each failure names the library, its version and the attribute, and says what to do.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import httpx
import pytest
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Field
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from chat.models import Conversation, Turn
from chat.openai_client import LeanOpenAI
from tests import fake_provider

ADVICE = "update chat/openai_client.py and chat/store/sql.py for this release, or run with FAST_PATHS=0 until it is"


def _moved(library: str, attribute: str, expected: str) -> str:
    return f"{library} {version(library)}: {attribute} is no longer {expected}; {ADVICE}"


def test_the_openai_client_hook_keeps_its_signature():
    parameters = inspect.signature(AsyncOpenAI._process_response_data).parameters
    assert list(parameters) == ["self", "data", "cast_to", "response"], _moved(
        "openai", "AsyncOpenAI._process_response_data(self, *, data, cast_to, response)", "that signature"
    )
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in ("data", "cast_to", "response"))


async def test_openai_streams_build_their_chunks_through_that_hook(fake):
    # If a stream stopped calling the client's `_process_response_data`, the override would
    # never run and every chunk would be built the slow way again, with nothing failing.
    built: list[object] = []

    class Counting(LeanOpenAI):
        def _process_response_data(self, *, data: object, cast_to: type[Any], response: httpx.Response) -> Any:
            chunk = super()._process_response_data(data=data, cast_to=cast_to, response=response)
            built.append(chunk)
            return chunk

    fake.script(fake_provider.text("ok"))
    client = Counting(base_url=f"{fake.url}/v1", api_key="k", max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    async for _ in stream:
        pass
    assert built and all(type(chunk) is ChatCompletionChunk for chunk in built), _moved(
        "openai", "AsyncStream's call of client._process_response_data", "how a streamed chunk is built"
    )


@pytest.mark.parametrize(
    ("owner", "method", "parameters"),
    [
        (Field, "pre_save", ["self", "model_instance", "add"]),
        (Field, "get_db_prep_save", ["self", "value", "connection"]),
        (Field, "get_db_prep_value", ["self", "value", "connection", "prepared"]),
        (Field, "get_col", ["self", "alias", "output_field"]),
        (BaseDatabaseOperations, "bulk_batch_size", ["self", "fields", "objs"]),
        (BaseDatabaseOperations, "get_db_converters", ["self", "expression"]),
    ],
)
def test_django_field_and_backend_hooks_keep_their_signatures(owner, method, parameters):
    # chat.store.sql prepares and converts values through these, as the ORM's compiler does.
    assert list(inspect.signature(getattr(owner, method)).parameters) == parameters, _moved(
        "django", f"{owner.__name__}.{method}({', '.join(parameters[1:])})", "that signature"
    )


def test_django_model_state_and_returning_fields_are_where_the_sql_path_looks():
    instance = Conversation(id="c", model="m")
    state = getattr(instance, "_state", None)
    assert state is not None and state.adding is True and hasattr(state, "db"), _moved(
        "django", "Model._state.adding / ._state.db", "an instance's saved state"
    )
    turn_pk = Turn._meta.pk
    assert all(hasattr(field, "db_returning") for field in Conversation._meta.concrete_fields), _moved(
        "django", "Field.db_returning", "an attribute of every field"
    )
    assert turn_pk is not None and not turn_pk.db_returning  # a client-made key: the insert writes it
