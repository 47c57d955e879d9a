"""/console/: the billing operators' console. Every view is wrapped by access.operator_page
(the URL walk in tests/console/test_access.py checks it)."""

from django.urls import path

from . import views

app_name = "console"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("invoices/<int:invoice_id>/", views.invoice_detail, name="invoice"),
    path("invoices/<int:invoice_id>/<slug:action>/", views.invoice_action, name="invoice-action"),
    path("accounts/<int:account_id>/", views.account_detail, name="account"),
    path("accounts/<int:account_id>/<slug:action>/", views.account_action, name="account-action"),
    path("audit/", views.audit_log, name="audit"),
    path("figures/", views.figures, name="figures"),
    path("vat/", views.vat_to_give_back, name="vat"),
    path("disputes/", views.disputes, name="disputes"),
    path("disputes/<int:dispute_id>/evidence/", views.dispute_evidence, name="dispute-evidence"),
    path("disputes/<int:dispute_id>/<slug:action>/", views.dispute_action, name="dispute-action"),
    path("ticket-disputes/", views.ticket_disputes, name="ticket-disputes"),
    path(
        "ticket-disputes/<int:ticket_dispute_id>/<slug:action>/",
        views.ticket_dispute_action,
        name="ticket-dispute-action",
    ),
    path("held-usage/", views.held_usage, name="held-usage"),
    path(
        "held-usage/spikes/<int:anomaly_id>/<slug:action>/",
        views.held_anomaly_action,
        name="held-anomaly-action",
    ),
    path(
        "held-usage/loops/<int:hold_id>/<slug:action>/",
        views.held_loop_action,
        name="held-loop-action",
    ),
]
