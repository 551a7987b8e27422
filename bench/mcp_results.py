"""What one large MCP tool result costs the worker: a call to the test stdio server's `big` tool
(`tests/tools/mcp/mcp_server.py`) returning N MiB, with a 10 ms timer running on the event loop
beside it. Reports the call's time and outcome, the timer's worst lag (how long the loop was
kept busy), the worker's peak RSS growth, and whether the next call to the same server works.

    python3 -m bench.mcp_results                  # 1.9, 50 and 150 MiB; MCP_MAX_RESULT_BYTES as set
    python3 -m bench.mcp_results --mib 50 --timeout 60

Prints one line a size and writes JSON (bench/results/mcp_results.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from typing import Any

from bench.measure import results_write
from tests.servers import PROJECT

SERVER_SCRIPT = PROJECT / "tests" / "tools" / "mcp" / "mcp_server.py"


async def measure(mib: float, timeout: float) -> dict[str, Any]:
    from django.conf import settings
    from django.test import override_settings

    from tools.mcp.config import StdioEntry
    from tools.mcp.server import McpServer

    with override_settings(MCP_TIMEOUT=timeout):
        server = McpServer("bench", StdioEntry(command=sys.executable, args=(str(SERVER_SCRIPT),)))
        await server.call("server_pid", {})  # started and warm
        worst, done = 0.0, False

        async def tick() -> None:
            nonlocal worst
            while not done:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - before - 0.01)

        ticker = asyncio.create_task(tick())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        result = await server.call("big", {"mebibytes": mib})
        elapsed = time.monotonic() - started
        done = True
        await ticker
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        after = await server.call("server_pid", {})
        await server.close()
    return {
        "mib": mib,
        "cap_bytes": settings.MCP_MAX_RESULT_BYTES,
        "ok": result.ok,
        "result_start": result.content[:120],
        "seconds": round(elapsed, 3),
        "loop_lag_seconds": round(worst, 3),
        "peak_rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
        "next_call_ok": after.ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, action="append", help="result sizes (default 1.9, 50, 150)")
    parser.add_argument("--timeout", type=float, default=60.0, help="MCP_TIMEOUT for the calls")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "mcp_results.json"))
    args = parser.parse_args()
    os.environ.update(DJANGO_SETTINGS_MODULE="dreamytin.settings", LOG_LEVEL="WARNING", SECRET_KEY="bench-only")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    figures = []
    for mib in args.mib or [1.9, 50.0, 150.0]:
        # One process a size would be fairer to peak RSS; in order, a later size's growth is
        # counted over the earlier peak, which only hides growth smaller than it.
        figure = asyncio.run(measure(mib, args.timeout))
        figures.append(figure)
        print(
            f"{mib:g} MiB: ok={figure['ok']} in {figure['seconds']} s, loop lag {figure['loop_lag_seconds']} s, "
            f"peak RSS +{figure['peak_rss_growth_mib']} MiB, next call ok={figure['next_call_ok']}"
        )
    results_write(args.out, figures)


if __name__ == "__main__":
    main()
