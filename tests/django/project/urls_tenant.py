"""Tenant URLconf (``ROOT_URLCONF``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("who/", views.who, name="who"),
    path("awho/", views.awho, name="awho"),
    path("stream/", views.stream, name="stream"),
]
