from django.db import connection
from django.http import JsonResponse
from psycopg import sql

from shop.models import Order


def orders(request):
    return JsonResponse({"schema": connection.schema_name, "orders": Order.objects.count()})


def add_order(request):
    order = Order.objects.create(number=Order.objects.count() + 1)
    return JsonResponse({"id": order.id})


def leak(request, schema):
    # Deliberately broken: writes into another tenant's table (a schema-qualified query).
    with connection.cursor() as cur:
        query = sql.SQL("insert into {}.shop_order (number, total, placed_at) values (1, 0, now())")
        cur.execute(query.format(sql.Identifier(schema)).as_string(cur.connection))
    return JsonResponse({"leaked": schema})
