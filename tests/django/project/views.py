"""Views of the test project: each answers which schema served it and what it read."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from .shared_app.models import Announcement
from .tenant_app.models import Item


def who(request: HttpRequest) -> JsonResponse:
    """Tenant view: the schema and the items it sees (one query)."""
    names = [i.name for i in Item.objects.order_by("id")]
    return JsonResponse({"schema": connection.schema_name, "items": names})


async def awho(request: HttpRequest) -> JsonResponse:
    """Async tenant view using the async ORM."""
    names = [i.name async for i in Item.objects.order_by("id")]
    return JsonResponse({"schema": connection.schema_name, "items": names})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """Streamed content produced after the middleware returned."""

    def rows() -> object:
        for item in Item.objects.order_by("id"):
            yield item.name + "\n"

    return StreamingHttpResponse(rows())


def public_home(request: HttpRequest) -> JsonResponse:
    """Public view: shared data only."""
    titles = [a.title for a in Announcement.objects.order_by("id")]
    return JsonResponse({"public": True, "schema": connection.schema_name, "titles": titles})


def not_found(request: HttpRequest) -> HttpResponse:
    """``DEFAULT_NOT_FOUND_TENANT_VIEW``."""
    return HttpResponse("no such tenant", status=404)
