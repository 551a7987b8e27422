"""Frames an attacker sends: each gets a coded error (or a close with a clear code), never a
traceback, a dropped socket or a stall; the socket still answers afterwards."""

from __future__ import annotations

import json
import logging
import random

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from dreamytin.asgi import application
from dreamytin.config import Rate
from tests.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_answers_ping(ws):
    await ws.send({"type": "ping"})
    assert (await ws.receive())["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("[" * 2000, "invalid_json"),
        ('{"message": ' + "[" * 100_000, "invalid_json"),
        ('{"message": "hi", "n": ' + "9" * 20_000 + "}", "invalid_json"),
        ('{"message": "\\ud800"}', "invalid_message"),
        ('{"message": "a\\udfffb"}', "invalid_message"),
        ('{"message": "a\\u0000b"}', "invalid_message"),
        ('{"message": "hi", "model": "gpt-4o\\u0000"}', "invalid_message"),
        ('{"type": ["chat"]}', "invalid_message"),
        ('{"type": {"a": 1}}', "invalid_message"),
        ('{"message": 1e999999}', "invalid_message"),
        ("NaN", "invalid_message"),
    ],
)
async def test_hostile_frame_gets_a_coded_error_and_the_socket_stays(ws, provider, caplog, frame, code):
    with caplog.at_level(logging.WARNING):
        await ws.communicator.send_to(text_data=frame)
        event = await ws.receive()
    assert event["type"] == "error" and event["code"] == code
    await assert_answers_ping(ws)
    assert provider.requests == []
    assert not [r for r in caplog.records if r.exc_info], "a hostile frame logged a traceback"


@pytest.mark.parametrize("path", ["/ws", "/ws/", "/ws/a/b", "/other", "/", "/ws/a%2Fb"])
async def test_a_socket_to_an_unrouted_path_is_refused_quietly(path, caplog):
    communicator = WebsocketCommunicator(application, path)
    with caplog.at_level(logging.ERROR):
        connected, _ = await communicator.connect(timeout=5)
    assert connected is False
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_frames_past_the_rate_are_refused_once_then_dropped(provider):
    with override_settings(RATE_LIMIT_FRAMES=Rate(5, 3600)):
        ws = await connect("frames1")
        for _ in range(8):
            await ws.send({"type": "ping"})
        answers = [await ws.receive() for _ in range(6)]
        assert [a["type"] for a in answers] == ["pong"] * 5 + ["error"]
        assert answers[-1]["code"] == "rate_limited" and answers[-1]["retry_after"] > 0
        assert await ws.communicator.receive_nothing(timeout=0.2)  # the rest of the window: dropped
        await ws.communicator.disconnect()


async def test_a_flood_far_past_the_rate_is_closed_with_4429(provider):
    with override_settings(RATE_LIMIT_FRAMES=Rate(2, 3600)):
        ws = await connect("frames2")
        for _ in range(25):
            await ws.communicator.send_to(text_data="x")
        outputs = []
        while True:
            output = await ws.communicator.receive_output(timeout=5)
            outputs.append(output)
            if output["type"] == "websocket.close":
                break
    assert outputs[-1] == {"type": "websocket.close", "code": 4429}


def _random_frame(rng: random.Random) -> dict:
    """One frame of a fuzz run: text (JSON-ish, broken JSON, hostile values) or binary."""
    choice = rng.randrange(12)
    if choice == 0:
        return {"bytes_data": rng.randbytes(rng.randrange(1, 4096))}
    if choice == 1:
        return {"text_data": "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 200)))}
    if choice == 2:
        depth = rng.randrange(500, 5000)
        return {"text_data": rng.choice("[{") * depth}
    if choice == 3:
        return {"text_data": '{"message": ' + "1" * rng.randrange(4000, 30000) + "}"}
    if choice == 4:
        return {"text_data": '{"message": "' + rng.choice(["\\ud800", "\\udc00x", "\\u0000", "ok\\ud83d"]) + '"}'}
    if choice == 5:
        return {"text_data": json.dumps({"type": rng.choice(["chat", "cancel", "ping", "resume", 7, None, [], {}])})}
    if choice == 6:
        return {"text_data": json.dumps({"message": rng.choice([None, 1, [], {}, True, ""]), "model": rng.random()})}
    if choice == 7:
        return {"text_data": '{"message": "hi", "model": "' + "m" * rng.randrange(1, 100_000) + '"}'}
    if choice == 8:
        return {"text_data": json.dumps([rng.random() for _ in range(rng.randrange(1, 1000))])}
    if choice == 9:
        return {"text_data": '{"a":' * 50 + "1" + "}" * 49}  # unbalanced
    if choice == 10:
        return {"text_data": json.dumps({"type": "cancel", "x": "y" * rng.randrange(1, 50_000)})}
    return {"text_data": json.dumps({"type": "ping"})}


async def test_fuzz_frames_each_get_a_coded_answer_and_the_server_stays_healthy(provider, client, caplog):
    rng = random.Random(23)  # noqa: S311 - fixed seed: a failure replays
    with override_settings(RATE_LIMIT_FRAMES=None), caplog.at_level(logging.WARNING):
        ws = await connect("fuzz1")
        for _ in range(300):
            frame = _random_frame(rng)
            await ws.communicator.send_to(**frame)
            if frame.get("text_data", "").startswith('{"type": "cancel"'):
                continue  # a cancel with no turn running has no answer
            answer = await ws.receive(timeout=5)
            assert answer["type"] in ("pong", "error"), answer
            if answer["type"] == "error":
                assert answer["code"] in ("invalid_json", "invalid_message", "empty_message", "unknown_model")
        await assert_answers_ping(ws)
        await ws.communicator.disconnect()
    assert not [r for r in caplog.records if r.exc_info]
    assert provider.requests == []
    assert (await sync_to_async(client.get)("/health")).status_code == 200


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "1%C2%B2", "-1", "+1", "%201"])
async def test_after_seq_of_non_ascii_digits_is_ignored_not_a_crash(provider, value):
    """`"²".isdigit()` is true but `int("²")` raises: the socket must open and answer as if no
    `after_seq` was sent."""
    socket = await connect(f"seq-digits?after_seq={value}")
    await assert_answers_ping(socket)
    await socket.communicator.disconnect()
