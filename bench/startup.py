"""Start-up: how long a server takes to answer `/health`, against the bare imports it cannot
avoid (`django`, `channels`, `agents`), in one run.

    python3 -m bench.startup                  # uvicorn and daphne, five starts each
    python3 -m bench.startup --smoke

Each figure is the median of the starts. "cold start" is process start to the first `/health`
200; "warm" is to the end of the background warm-up (`/health` says `"warmup": "done"`), after
which the first turn pays no first-use costs. The aim: cold start within 1.2x of the bare
imports. LiteLLM's import is shown beside them: the server skips it until a model needs it.
Prints and writes JSON (bench/results/startup.json unless --out).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import results_write
from bench.run import server_env
from tests.servers import PROJECT, Server

BARE = "django, channels, agents"
WITH_LITELLM = "django, channels, agents, litellm"


def import_seconds(modules: str) -> float:
    env = {"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True, cwd=PROJECT)
    return time.perf_counter() - started


def server_start(kind: str, env: dict[str, str], log: Path) -> tuple[float, float]:
    server = Server(kind, env, log)
    server.stop()
    return server.cold_start, server.warm


def measure(servers: list[str], starts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = server_env(Path(tmp), "http://127.0.0.1:9")  # no request is made
        bare = statistics.median(import_seconds(BARE) for _ in range(starts))
        litellm = statistics.median(import_seconds(WITH_LITELLM) for _ in range(starts))
        report: dict[str, Any] = {"bare_import_s": round(bare, 3), "with_litellm_import_s": round(litellm, 3)}
        for kind in servers:
            runs = [server_start(kind, env, Path(tmp) / f"{kind}.log") for _ in range(starts)]
            cold = statistics.median(run[0] for run in runs)
            report[kind] = {
                "cold_start_s": round(cold, 3),
                "warm_s": round(statistics.median(run[1] for run in runs), 3),
                "cold_over_bare_import": round(cold / bare, 2),
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="uvicorn,daphne")
    parser.add_argument("--starts", type=int, default=5, help="starts of each; medians are reported")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "startup.json"))
    args = parser.parse_args()
    if args.smoke:
        args.starts = 1
    report = measure(args.servers.split(","), args.starts)
    print(f"bare imports ({BARE}): {report['bare_import_s']} s; with litellm: {report['with_litellm_import_s']} s")
    for kind in args.servers.split(","):
        row = report[kind]
        print(
            f"{kind}: /health after {row['cold_start_s']} s ({row['cold_over_bare_import']}x the bare imports), "
            f"warm after {row['warm_s']} s"
        )
    results_write(args.out, report)


if __name__ == "__main__":
    main()
