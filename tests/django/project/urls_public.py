"""Public URLconf (``PUBLIC_SCHEMA_URLCONF``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("", views.public_home, name="home"), path("who/", views.public_home)]
