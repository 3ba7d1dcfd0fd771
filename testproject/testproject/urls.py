from django.urls import path
from ledger import views

urlpatterns = [
    path("", views.index),
    path("accounts/", views.accounts),
    path("transfer/", views.transfer),
    path("total/", views.total),
]
