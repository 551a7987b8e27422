"""Two real uvicorn worker processes (`uvicorn --workers 2`) sharing PROMETHEUS_MULTIPROC_DIR:
whichever worker answers `GET /metrics`, it reports the totals of both."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.fake_provider import FakeProvider, text
from tests.observability.scrape import samples, value
from tests.servers import Server
from tests.test_end_to_end import open_socket, server_env, until_end

pytestmark = pytest.mark.timeout(300)
TURNS_PER_ROUND = 8


@pytest.fixture(scope="module")
def workers(fake_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("metrics-workers")
    folder = tmp / "prometheus"
    folder.mkdir()
    env = {**server_env(fake_server, tmp, "metrics_workers"), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    server = Server("uvicorn:2", env, tmp / "server.log", start_timeout=180)
    yield server, folder
    server.stop()


def one_turn(server: Server) -> None:
    with open_socket(server, uuid.uuid4().hex) as ws:
        ws.send(json.dumps({"message": "hi", "model": "gpt-4o"}))
        assert until_end(ws)[-1]["finish_reason"] == "stop"


def turns_by_worker(folder: Path) -> dict[int, float]:
    """Each worker's own count, read from its own file (what a scrape adds up)."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name).group(1))
        merged = MultiProcessCollector.merge([str(path)], accumulate=False)
        counts[pid] = sum(
            sample.value
            for metric in merged
            for sample in metric.samples
            if sample.name == "dreamytin_turns_total" and sample.labels.get("model") == "gpt-4o"
        )
    return counts


def scrape(server: Server) -> dict:
    # A new connection each time: the kernel hands it to either worker.
    answer = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert answer.status_code == 200
    return samples(answer.text)


def test_every_worker_answers_the_totals_of_all_workers(workers, fake):
    server, folder = workers
    turns = 0
    # Concurrent sockets land on both workers; go on until both have run turns.
    while len([count for count in turns_by_worker(folder).values() if count]) < 2 and turns < 10 * TURNS_PER_ROUND:
        fake.script(*[text("Hello ", "there.", interval=0.05) for _ in range(TURNS_PER_ROUND)])
        with ThreadPoolExecutor(TURNS_PER_ROUND) as pool:
            list(pool.map(lambda _: one_turn(server), range(TURNS_PER_ROUND)))
        turns += TURNS_PER_ROUND
    by_worker = turns_by_worker(folder)
    assert len([count for count in by_worker.values() if count]) == 2, by_worker
    assert sum(by_worker.values()) == turns
    # A scrape reads every worker's file, so a scrape on either worker gives these totals.
    for _ in range(12):
        totals = scrape(server)
        assert value(totals, "dreamytin_turns_total", model="gpt-4o", finish_reason="stop") == turns
        assert value(totals, "dreamytin_turn_first_token_seconds_count", model="gpt-4o") == turns
        assert value(totals, "dreamytin_turns_running") == 0


def gauge_by_worker(folder: Path, name: str) -> dict[str, float]:
    return {
        path.name: sum(s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples if s.name == name)
        for path in folder.glob("gauge_livesum_*.db")
    }


def test_open_sockets_on_both_workers_add_up_and_leave_the_gauge(workers):
    server, folder = workers
    sockets = [open_socket(server, uuid.uuid4().hex) for _ in range(6)]
    try:
        on_workers = gauge_by_worker(folder, "dreamytin_sockets_open")
        assert sum(on_workers.values()) == 6
        for _ in range(6):
            assert value(scrape(server), "dreamytin_sockets_open") == 6
    finally:
        for ws in sockets:
            ws.close()
    for _ in range(50):
        if value(scrape(server), "dreamytin_sockets_open") == 0:
            break
    assert value(scrape(server), "dreamytin_sockets_open") == 0
