"""bench.workers keeps working: a tiny run of turns watched from another worker. Its latency and
CPU figures are never asserted; what every watcher received is, since the smoke run's few turns
must arrive whole there too."""

from __future__ import annotations

import os

import pytest

from tests.bench.test_smoke import bench_run

# Unlike the other benchmarks, this one needs what the embedded defaults lack: a second worker
# reaches a turn through Redis, and both workers share a PostgreSQL database. It makes its own of
# each (a database of its own on DATABASE_URL's server, a Redis database of its own), so the
# suite's databases are left alone.
pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="bench.workers runs two workers on PostgreSQL and Redis",
    ),
]

# Not bench.workers' defaults (bench_workers, Redis database 13): a full run may be going on.
OWN = ["--database", "bench_workers_smoke", "--redis-db", "12"]


@pytest.mark.timeout(300)  # three servers' cold starts, a warm-up and four rounds
def test_workers_smoke_run_checks_every_watcher(tmp_path):
    printed, report = bench_run("workers", tmp_path / "workers.json", "--smoke", *OWN, timeout=300)
    assert "targets:" in printed
    assert [r["kind"] for r in report["rounds"]] == ["fanout", "single", "single", "fanout"]  # A B B A
    for row in report["rounds"]:
        assert row["failed"] == 0 and row["turns"] == 8  # 4 conversations, 2 turns each
        assert row["cpu_us_per_delivered_chunk"] > 0
    for row in report["rounds"]:
        if row["kind"] == "fanout":
            # Every watcher got its starter's turns, frame for frame: 5 chunks a turn, twice.
            assert row["delivered_chunks"] == 2 * 8 * 5
            assert row["differing_turns"] == row["lost"] == row["reordered"] == row["duplicated"] == 0
            assert row["extra_turns"] == row["starter_gaps"] == row["stray_frames"] == 0
            assert row["watcher_chunk_p50_ms"] is not None and row["hop_p99_ms"] is not None
        else:
            assert row["delivered_chunks"] == 8 * 5
    assert report["fanout_over_single_cpu"] > 0
    assert set(report["server_log"]) == {"worker-a", "worker-b", "single"}
    assert [t["target"] for t in report["targets"]][:2] == ["0 lost events", "0 reordered events"]
    assert all(t["pass"] for t in report["targets"][:2])
