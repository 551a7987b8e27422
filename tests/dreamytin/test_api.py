"""The system endpoints, JSON errors in every DEBUG setting, CORS, and the API docs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.utils import OperationalError
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_root(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.json()["status"] == "running" and response.json()["message"]


def test_health_checks_the_database_and_the_channel_layer(client):
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "healthy"
    assert body["services"]["database"]["status"] == "up"
    assert body["services"]["channel_layer"]["status"] == "up"
    assert body["version"] and body["timestamp"].endswith("+00:00")


def test_health_with_a_failing_database_is_unhealthy(client):
    def refuse(execute, sql, params, many, context):
        raise OperationalError("database is gone")

    with connection.execute_wrapper(refuse):
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["services"]["database"]["status"] == "down"


def test_health_with_a_failing_channel_layer_is_degraded(client):
    # A Redis that is not there: port 9 (discard) on loopback refuses connections.
    unreachable = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]}}
    }
    with override_settings(CHANNEL_LAYERS=unreachable):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        response = client.get("/health")
    channel_layers.backends.clear()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["services"]["channel_layer"]["status"] == "down"
    assert body["services"]["database"]["status"] == "up"


@pytest.mark.parametrize("debug", [True, False])
def test_errors_are_json_in_every_debug_setting(client, debug):
    with override_settings(DEBUG=debug, ROOT_URLCONF="tests.dreamytin.urls_boom"):
        not_found = client.get("/no/such/page")
        not_allowed = client.put("/health")
        client.raise_request_exception = False
        failed = client.get("/boom")
    assert not_found.status_code == 404 and not_found.json() == {"detail": "Not Found"}
    assert not_allowed.status_code == 405 and "GET" in not_allowed.json()["detail"]
    assert failed.status_code == 500 and failed.json() == {"detail": "Internal Server Error"}
    assert "secret internal detail" not in failed.content.decode()


@pytest.mark.parametrize("origin", ["http://localhost:1420", "http://127.0.0.1:1420", "tauri://localhost"])
def test_cors_admits_the_frontend(client, origin):
    preflight = client.options(
        "/conversations",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert client.get("/models", HTTP_ORIGIN=origin)["Access-Control-Allow-Origin"] == origin
    # Error bodies carry the header too, so the browser can read them.
    assert client.get("/conversations/nope", HTTP_ORIGIN=origin)["Access-Control-Allow-Origin"] == origin


def test_cors_refuses_other_origins(client):
    response = client.get("/models", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/", "/health", "/models", "/conversations", "/conversations/{conversation_id}"} <= set(schema["paths"])


def test_a_405_keeps_its_allow_header(client):
    response = client.put("/health")
    assert response.status_code == 405
    assert response["Allow"] == "GET"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_request_bodies_must_be_json(client, content_type):
    # What a cross-site page can send without a CORS preflight.
    response = client.generic("POST", "/conversations", b'{"session_id": "csrf1"}', content_type=content_type)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    from chat.models import Conversation

    assert not Conversation.objects.filter(id="csrf1").exists()


def test_a_body_with_no_content_type_is_refused(client):
    response = client.generic("POST", "/conversations", b'{"session_id": "csrf2"}', content_type="")
    assert response.status_code == 415
