"""A span per HTTP request when OTel is on, continuing the request's `traceparent`."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from dreamytin.middleware import AsyncMiddleware
from observability.tracing import caller_from_headers, tracer


class TraceMiddleware(AsyncMiddleware):
    async def __call__(self, request: HttpRequest) -> HttpResponse:
        active = tracer()
        if active is None:
            return await self.get_response(request)
        caller = caller_from_headers({name.lower(): value for name, value in request.headers.items()})
        span = active.start_span(
            request.method or "HTTP",
            context=caller,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method or "", "url.path": request.path},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            response = await self.get_response(request)
            match = request.resolver_match
            if match is not None:  # the route, not the path: span names must be few
                span.update_name(f"{request.method} /{match.route}")
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response
        finally:
            span.end()
            otel_context.detach(token)
