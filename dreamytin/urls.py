from django.contrib import admin
from django.urls import path

from dreamytin.api import api
from observability.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view),
    path("", api.urls),
]
