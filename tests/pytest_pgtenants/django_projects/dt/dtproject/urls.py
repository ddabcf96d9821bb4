from django.urls import path
from shop import views

urlpatterns = [
    path("orders/", views.orders),
    path("orders/add/", views.add_order),
    path("leak/<str:schema>/", views.leak),
]
