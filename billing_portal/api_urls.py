"""The partner API, /api/v1/ (contract: ../shared/spec/api.md)."""

from django.urls import path

from plans import api as plans_api

urlpatterns = [
    path("accounts", plans_api.AccountsApi.as_view(), name="api-accounts"),
    path("accounts/<slug:slug>", plans_api.AccountDetailApi.as_view(), name="api-account"),
    path("plans", plans_api.PlansApi.as_view(), name="api-plans"),
]
