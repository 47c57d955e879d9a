from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from billing import views as billing_views
from operations import views as operations_views

from . import demo_views, views

handler404 = "billing_portal.api_errors.json_not_found"
handler500 = "billing_portal.api_errors.json_server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", operations_views.healthz, name="healthz"),
    path("readyz", operations_views.readyz, name="readyz"),
    path("metrics", operations_views.metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("console/", include("console.urls")),
    # Browsers ask for /favicon.ico whatever the page says (the admin's pages say nothing).
    path("favicon.ico", views.favicon),
    path("demo/mail/", demo_views.sent_mail, name="demo-mail"),
    path("pay/confirm/<str:token>/", billing_views.confirm_payment, name="confirm-payment"),
    path("billing/<slug:slug>/", include("billing.pages.urls")),
    path("stripe/webhooks/", billing_views.stripe_webhook, name="stripe-webhook"),
    path("webhooks/shopify/", billing_views.shopify_webhook, name="shopify-webhook"),
    path("api/v1/", include("billing_portal.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's init script from ?script= instead of inline (the CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
