"""Django's stock middleware, run on the event loop instead of a thread.

Under ASGI, `MiddlewareMixin` runs each `process_request` and `process_response` in asgiref's
one thread-sensitive thread: two thread hops per middleware and request, about 0.1 ms of CPU
each, and more while the loop is busy (bench/sse.py: a turn started over HTTP paid ~8 of them
before it streamed a token). These five do no I/O in those methods (headers, cookies, lazy
objects, URL resolution), so they run inline here. The session and messages middleware stay as
Django has them: their `process_response` may write the session to the database.
"""

from __future__ import annotations

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.http import HttpRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware


class _Inline:
    """`MiddlewareMixin.__acall__`, with the hooks called on the loop."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class InlineSecurityMiddleware(_Inline, SecurityMiddleware):
    pass


class InlineCommonMiddleware(_Inline, CommonMiddleware):
    pass


class InlineCsrfViewMiddleware(_Inline, CsrfViewMiddleware):
    pass


class InlineAuthenticationMiddleware(_Inline, AuthenticationMiddleware):
    pass


class InlineXFrameOptionsMiddleware(_Inline, XFrameOptionsMiddleware):
    pass
