"""The benchmark keeps working: a tiny run of every part. Its figures are never asserted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.knowledge.semantic.conftest import MODEL_MISSING, MODEL_MISSING_REASON

PROJECT = Path(__file__).resolve().parents[2]

# The benchmarks choose their own database (a SQLite file, or BENCH_DATABASE_URL) and no channel
# layer, whatever DATABASE_URL and REDIS_URL say: the suite's PostgreSQL + Redis pass would only
# repeat these same runs, minutes of them.
pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL")),
        reason="the benchmarks do not use DATABASE_URL or REDIS_URL; the embedded-defaults pass runs them",
    ),
]


def bench_run(module: str, out: Path, *args: str, timeout: float) -> tuple[str, Any]:
    """`python3 -m bench.<module> ... --out <out>`: what it printed and the JSON it wrote.

    The benchmark runs in a process group of its own, killed whole at the end: if it fails or
    times out, its provider and servers must not outlive it (killing only the benchmark once
    left them running, idle, long after the test had failed)."""
    command = [sys.executable, "-m", f"bench.{module}", *args, "--out", str(out)]
    process = subprocess.Popen(
        command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        printed, _ = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, printed
    return printed, json.loads(out.read_text())


# Steady arrivals only: the burst's rounds run in the A/B smoke run below (the same load, from
# bench.measure), and each arrival here costs two server rounds and four SDK-only processes. Two
# server rounds, four SDK-only processes and two servers' cold starts: about 60 s on a slow day
# here, near the suite's default limit.
@pytest.mark.timeout(300)
def test_benchmark_smoke_run_writes_every_figure(tmp_path):
    args = ("--smoke", "--servers", "daphne,uvicorn", "--arrivals", "steady")
    printed, report = bench_run("run", tmp_path / "bench.json", *args, timeout=300)
    assert "cold start" in printed
    assert set(report["servers"]) == {"daphne", "uvicorn"}
    # Each server's own layer is taken against the SDK alone on the loop that server runs on.
    assert report["servers"]["daphne"]["loop"] == "asyncio"
    assert report["servers"]["uvicorn"]["loop"] == "uvloop"
    for entry in report["servers"].values():
        loop = entry["loop"]
        assert entry["cold_start_s"] > 0 and entry["first_ttft_ms"] is not None
        for by_arrival in entry["by_k"].values():
            assert set(by_arrival) == {"steady"}
            for row in by_arrival.values():
                assert row["failed"] == 0 and row["chunks"] > 0
                for key in (
                    "added_ttft_p50_ms",
                    "added_chunk_p99_ms",
                    "cpu_us_per_chunk",
                    "own_layer_cpu_overhead_pct",
                    "rss_per_idle_conn_kib",
                ):
                    assert row[key] is not None
                # Every server round has its SDK-only round on the same loop beside it.
                assert row["sdk_paired"]["loop"] == loop and row["sdk_paired"]["failed"] == 0
                assert [pair["sdk_cpu_us_per_chunk"] for pair in row["pairs"]] == [row["sdk_cpu_us_per_chunk"]]
    for by_arrival in report["baselines"].values():
        for base in by_arrival.values():
            assert base["raw_sse"]["failed"] == 0 and base["sdk"]["failed"] == 0
            assert base["sdk"]["cpu_us_per_chunk"] and base["sdk_stock_client"]["cpu_us_per_chunk"]
            assert base["sdk"]["loop"] == "asyncio"


def test_frame_cost_smoke_run_measures_every_server(tmp_path):
    _, rows = bench_run("frames", tmp_path / "frames.json", "--smoke", timeout=120)
    assert [row["server"] for row in rows] == ["daphne", "uvicorn", "uvicorn, deflate"]
    for row in rows:
        assert row["frames"] == row["k"] * 5  # every frame arrived
        assert row["cpu_us_per_frame"] > 0


def test_ab_smoke_run_compares_two_checkouts(tmp_path):
    # One checkout against itself with the fast paths off on B: the stock paths run a turn too.
    # A burst, which the run above leaves out.
    tiny = ["--k", "2", "--chunks", "3", "--rate", "50", "--ttft", "0.05", "--rounds", "2", "--sdk"]
    tiny += ["--env-b", "FAST_PATHS=false", "--arrival", "burst"]
    _, report = bench_run("ab", tmp_path / "ab.json", ".", ".", *tiny, timeout=300)
    assert report["config"]["arrival"] == "burst"
    assert report["config"]["env_a"] == {} and report["config"]["env_b"] == {"FAST_PATHS": "false"}
    assert [len(report["cpu_us_per_chunk"][name]) for name in ("A", "B", "sdk")] == [2, 2, 2]
    assert len(report["pairs_b_over_a_pct"]) == 2 and report["median"]["B"] > 0


def test_encode_smoke_run_times_both_ways_of_building_a_frame(tmp_path):
    _, result = bench_run("encode", tmp_path / "encode.json", "--smoke", timeout=60)
    assert result.keys() == {"generic_us_per_frame", "turn_frames_us_per_frame"}


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="bench.instructions needs valgrind")
@pytest.mark.timeout(300)  # Python starts about ten times slower under valgrind
def test_instruction_count_smoke_run_counts_the_sdk_and_the_server(tmp_path):
    printed, report = bench_run("instructions", tmp_path / "instructions.json", "--smoke", timeout=300)
    assert "our layer" in printed
    sdk, server = report["sdk"]["uvloop"], report["servers"]["uvicorn"]
    # Counting covered the turn and nothing else: every chunk, and far fewer instructions than
    # the billions that starting the process takes.
    assert sdk["chunks"] == server["chunks"] == 5
    assert 0 < sdk["instructions"] < 10**9 and 0 < server["instructions"] < 10**9
    assert server["own_layer_pct"] is not None


def test_startup_smoke_run_compares_each_server_with_the_bare_imports(tmp_path):
    printed, report = bench_run("startup", tmp_path / "startup.json", "--smoke", timeout=120)
    assert "bare imports" in printed
    for kind in ("uvicorn", "daphne"):
        assert 0 < report[kind]["cold_start_s"] <= report[kind]["warm_s"]
        assert report[kind]["cold_over_bare_import"] > 0


def test_knowledge_smoke_run_indexes_searches_and_measures_recall(tmp_path):
    printed, report = bench_run("knowledge", tmp_path / "knowledge.json", "--smoke", timeout=120)
    assert "recall@5" in printed
    assert report["database"] == "sqlite" and report["notes"] == report["documents"] == 350
    assert report["searches"] == 100 and set(report["search_by_kind"]) == {"question", "keywords", "common"}
    assert report["search_cpu_p99_ms"] >= report["search_cpu_p50_ms"] > 0 and "CPU p50" in printed
    assert report["questions"] == 50 and 0 <= report["recall_at_5"] <= 1


def test_conversation_search_smoke_run_times_searches_with_and_without_users(tmp_path):
    printed, report = bench_run("conversations", tmp_path / "conversations.json", "--smoke", timeout=180)
    assert report["conversations"] == 200 and report["messages"] == 4000
    for label in ("one_user", "no_users"):
        assert label in printed and report[label]["searches"] == 100 and report[label]["p99_ms"] > 0
        assert set(report[label]["by_kind"]) == {"name", "message", "common"}
        assert report[label]["recall_at_5"] > 0.5


def test_branches_smoke_run_times_the_display_and_the_replay_before_and_after(tmp_path):
    printed, report = bench_run("branches", tmp_path / "branches.json", "--smoke", timeout=180)
    for label in ("linear", "branched"):
        assert f"{label}: 20 turns on the path" in printed
        for key in ("display_before", "display_now", "replay_before", "replay_now", "endpoint_before", "endpoint_now"):
            assert report[label][key]["cpu_p50_ms"] > 0


@pytest.mark.skipif(MODEL_MISSING, reason=MODEL_MISSING_REASON)
@pytest.mark.timeout(240)  # past bench_run's own 180 s, so that its clean-up runs
def test_knowledge_semantic_smoke_run_compares_hybrid_with_full_text(tmp_path):
    printed, report = bench_run("knowledge", tmp_path / "semantic.json", "--smoke", "--semantic", timeout=180)
    semantic = report["semantic"]
    assert "hybrid" in printed and semantic["passages_embedded"] == report["chunks"] > 0
    assert semantic["embed_passages_per_s"] > 0 and semantic["hybrid_search_p99_ms"] > 0
    assert set(semantic["recall"]) == {"fts", "vectors", "hybrid"}
    # The facts are planted in 50 notes of 70: meaning alone finds most of them.
    assert semantic["recall"]["vectors"]["recall_at_5"] >= 0.5


@pytest.mark.local_model
@pytest.mark.timeout(300)
def test_local_model_smoke_run_measures_load_speed_and_memory(tmp_path):
    printed, report = bench_run("local_model", tmp_path / "local.json", "--smoke", timeout=300)
    assert "tokens/s" in printed
    assert report["load_s"] > 0 and report["rss_peak_mib"] >= report["rss_loaded_mib"] > 0
    hello = report["hello"][0]
    assert hello["output_tokens"] > 0 and hello["ttft_s"] is not None and hello["reply_s"] >= hello["ttft_s"]


@pytest.mark.timeout(300)
def test_sse_smoke_run_compares_sse_with_websocket(tmp_path):
    printed, report = bench_run("sse", tmp_path / "sse.json", "--smoke", timeout=300)
    assert "SSE/WS" in printed
    row = report["servers"]["uvicorn"]
    assert row["failed"] == 0 and row["sse_over_websocket"] > 0
    assert row["websocket_cpu_us_per_chunk"] > 0 and row["sse_cpu_us_per_chunk"] > 0
