"""The app behind the reverse proxy in deploy/ (deploy/nginx.conf, run by a real nginx in front of
daphne and uvicorn): server-sent events come through as they are made, not held to the turn's
end; a client that hangs up on its stream stops the turn as a socket leaving does; a socket
upgraded through the proxy gets the turn. Skipped where nginx is not installed (.ci/run
installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.chat.sse_client import sse_events
from tests.fake_provider import FakeProvider, text
from tests.servers import Server, free_port
from tests.test_end_to_end import closed_early_within, server_env, until_end

pytestmark = [
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)"),
    pytest.mark.timeout(300),
]
TOKEN = "proxy-test-token-0123456789-abcdefghijkl"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
DEPLOYED = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
WORDS = [f"word{i} " for i in range(20)]


def site_config(upstream: int, listen: int) -> str:
    """deploy/nginx.conf's server block as deployed, but for one local upstream: Docker's resolver
    and `resolve` (nginx 1.27.3 and later) give way to the worker's address."""
    site = DEPLOYED.read_text()
    site = re.sub(r"^resolver .*;$", "", site, flags=re.M)
    site = re.sub(r"server app:8000 resolve", f"server 127.0.0.1:{upstream}", site)
    assert f"127.0.0.1:{upstream}" in site, "deploy/nginx.conf's upstream changed: update this test"
    return site.replace("listen 80;", f"listen 127.0.0.1:{listen};")


class Nginx:
    def __init__(self, upstream: int, home: Path) -> None:
        self.port = free_port()
        home.mkdir()
        (home / "site.conf").write_text(site_config(upstream, self.port))
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp = " ".join(f"{kind}_temp_path {home / kind};" for kind in kinds)
        (home / "nginx.conf").write_text(
            f"daemon off; pid {home / 'nginx.pid'}; error_log {home / 'error.log'} warn; user root;\n"
            f"events {{}}\nhttp {{ access_log off; {temp} include {home / 'site.conf'}; }}\n"
        )
        self.log = home / "error.log"
        self.process = subprocess.Popen(["nginx", "-p", str(home), "-c", str(home / "nginx.conf")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start: {self.log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def proxy(request: pytest.FixtureRequest, fake_server: FakeProvider, tmp_path_factory) -> Iterator[Nginx]:
    tmp = tmp_path_factory.mktemp(request.param)
    # Behind a proxy every client looks local: `none` refuses forwarded requests (docs/security.md).
    env = {**server_env(fake_server, tmp, f"nginx_{request.param}"), "AUTH_MODE": "token", "AUTH_TOKEN": TOKEN}
    server = Server(request.param, env, tmp / "server.log", start_timeout=180)
    try:
        nginx = Nginx(server.port, tmp / "nginx")
        yield nginx
        nginx.stop()
    finally:
        server.stop()


def streamed(proxy: Nginx, conversation_id: str) -> Iterator[tuple[float, dict[str, Any]]]:
    """The events of a turn posted through the proxy, each with the time it arrived."""
    body = {"message": "count", "model": "gpt-4o", "stream": True}
    url = f"{proxy.url}/conversations/{conversation_id}/messages"
    with httpx.stream("POST", url, json=body, headers=BEARER, timeout=20) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(reply.iter_lines()):
            yield time.monotonic(), event


def test_server_sent_events_come_through_the_proxy_as_they_are_made(proxy, fake):
    fake.script(text(*WORDS, interval=0.1))  # two seconds of reply
    conversation_id = uuid.uuid4().hex
    arrived = list(streamed(proxy, conversation_id))
    events = [event for _, event in arrived]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert "".join(e["data"]["content"] for e in events if e["event"] == "stream") == "".join(WORDS)
    first_word = next(at for at, e in arrived if e["event"] == "stream")
    # Buffered, every event would arrive at once, after the last word.
    assert arrived[-1][0] - first_word > 1.0
    shown = httpx.get(f"{proxy.url}/conversations/{conversation_id}", headers=BEARER, timeout=5).json()
    assert shown["messages"][-1]["content"] == "".join(WORDS)


def test_a_client_hanging_up_on_its_stream_through_the_proxy_stops_the_turn(proxy, fake):
    fake.script(text(*WORDS, *WORDS, interval=0.1))
    conversation_id = uuid.uuid4().hex
    events = streamed(proxy, conversation_id)
    _, first = next(events)
    left_at = time.time()
    events.close()  # the connection to nginx closes; nginx closes its own to the worker
    assert closed_early_within(fake, left_at, seconds=2.0)  # TURN_DETACH_GRACE=0
    report = f"{proxy.url}/conversations/{conversation_id}/turns/{first['data']['message_id']}"
    deadline = time.monotonic() + 10
    while (status := httpx.get(report, headers=BEARER, timeout=5).json()["status"]) == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status == "cancelled"


def test_a_socket_upgraded_through_the_proxy_gets_the_turn(proxy, fake):
    fake.script(text(*WORDS[:5]))
    conversation_id = uuid.uuid4().hex
    url = f"ws://127.0.0.1:{proxy.port}/ws/{conversation_id}"
    with connect(url, subprotocols=["bearer", TOKEN], open_timeout=5) as ws:  # type: ignore[list-item]
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        ws.send(json.dumps({"message": "count", "model": "gpt-4o"}))
        events = until_end(ws)
    assert "".join(e["content"] for e in events if e["type"] == "stream") == "".join(WORDS[:5])
    assert events[-1]["finish_reason"] == "stop"
