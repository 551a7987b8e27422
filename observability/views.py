"""`GET /metrics`: the Prometheus text format, for loopback clients or `Authorization: Bearer
<METRICS_TOKEN>`.

With PROMETHEUS_MULTIPROC_DIR, the answer adds up every worker's files (the same totals
whichever worker a scrape reaches); a worker that died leaves its counters in the totals and
its gauges out of them.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from accounts.identity import FORWARDED_HEADERS, is_loopback
from dreamytin.middleware import json_error

# A live gauge's file: gauge_livesum_<pid>.db (prometheus_client's naming).
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def _allowed(request: HttpRequest) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if settings.METRICS_TOKEN and scheme.lower() == "bearer":
        # Constant time: the comparison must not tell how many leading characters were right.
        return hmac.compare_digest(presented.strip().encode("utf-8", "surrogatepass"), settings.METRICS_TOKEN.encode())
    forwarded = FORWARDED_HEADERS & {name.lower() for name in request.headers}
    return is_loopback(request.META.get("REMOTE_ADDR", "")) and not forwarded


def _dead_workers_forget(folder: Path) -> None:
    """A worker that died (uvicorn starts another) must not count in the live gauges."""
    for path in folder.iterdir():
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(folder))
        except PermissionError:
            pass  # alive, another user's


def exposition() -> bytes:
    folder = settings.PROMETHEUS_MULTIPROC_DIR
    if folder is None:
        return generate_latest(REGISTRY)
    _dead_workers_forget(folder)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry)


async def metrics_view(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS:
        return json_error(404, "Metrics are off (METRICS=0).")
    if request.method != "GET":
        response = json_error(405, "Method Not Allowed: allowed methods are GET")
        response["Allow"] = "GET"
        return response
    if not _allowed(request):
        response = json_error(
            401 if settings.METRICS_TOKEN else 403,
            "Metrics are served to loopback clients, or with Authorization: Bearer <METRICS_TOKEN>.",
            code="unauthorized",
        )
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # Reading the workers' files is blocking I/O: not on the event loop.
    body = await sync_to_async(exposition, thread_sensitive=False)()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
