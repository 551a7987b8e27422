"""The project's URLs plus a view that fails, to see what a 500 looks like."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from dreamytin.urls import urlpatterns as project_urls


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internal detail")


urlpatterns = [path("boom", boom), *project_urls]
