"""The ``app`` fixture the pytest recipes in docs/testing.md take: a stand-in for your app.

Appended to the docs' own ``conftest.py`` example when tests/test_docs_examples.py runs a
recipe. Like a real application, it is already wrapped in tenantkit's routing middleware.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tenantkit.web.wsgi import WSGITenantMiddleware


@pytest.fixture
def app(tenancy: Any) -> Iterator[Flask]:
    """A small Flask shop behind WSGITenantMiddleware: /, GET /orders, POST /checkout."""
    shop = Flask("shop")

    @shop.get("/")
    def index() -> dict[str, Any]:
        return {"ok": True}

    @shop.get("/orders")
    def orders() -> dict[str, Any]:
        with tenancy.connection() as conn:  # the tenant the middleware made current
            return {"orders": conn.execute("select count(*) from orders").fetchone()[0]}

    @shop.post("/checkout")
    def checkout() -> tuple[dict[str, Any], int]:
        with tenancy.connection() as conn:
            conn.execute("insert into orders (number) values (1)")
        return {"ok": True}, 201

    middleware = WSGITenantMiddleware(shop.wsgi_app, tenancy)
    shop.wsgi_app = middleware  # type: ignore[method-assign]
    yield shop
    close = getattr(middleware, "close", None) or middleware.resolver.close
    close()
