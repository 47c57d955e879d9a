"""The partner API, /api/v1/ (contract: ../shared/spec/api.md; as built: docs/api.md)."""

from django.urls import path

from billing import api as billing_api
from billing import api_spike_guard, api_ticket_disputes
from metering import api as metering_api
from outbox import api as outbox_api
from plans import api as plans_api

urlpatterns = [
    # plans' account views with the statement of account (credit balance, amount owed) added
    path("accounts", billing_api.AccountsApi.as_view(), name="api-accounts"),
    path("accounts/<slug:slug>", billing_api.AccountDetailApi.as_view(), name="api-account"),
    # metering's usage with the late units that billing's closes know (F6)
    path("accounts/<slug:slug>/usage", billing_api.UsageApi.as_view(), name="api-usage"),
    path(
        "accounts/<slug:slug>/tickets/<str:ticket>/billing",
        metering_api.TicketBillingApi.as_view(),
        name="api-ticket-billing",
    ),
    path(
        "accounts/<slug:slug>/ticket-disputes",
        api_ticket_disputes.TicketDisputesApi.as_view(),
        name="api-ticket-disputes",
    ),
    path(
        "accounts/<slug:slug>/ticket-disputes/bulk",
        api_ticket_disputes.TicketDisputesBulkApi.as_view(),
        name="api-ticket-disputes-bulk",
    ),
    path(
        "accounts/<slug:slug>/ticket-disputes/<int:dispute_id>",
        api_ticket_disputes.TicketDisputeApi.as_view(),
        name="api-ticket-dispute",
    ),
    path(
        "accounts/<slug:slug>/held-usage",
        api_spike_guard.HeldUsageApi.as_view(),
        name="api-held-usage",
    ),
    path(
        "accounts/<slug:slug>/held-usage/release",
        api_spike_guard.HeldUsageReleaseApi.as_view(),
        name="api-held-usage-release",
    ),
    path(
        "accounts/<slug:slug>/held-usage/exclude",
        api_spike_guard.HeldUsageExcludeApi.as_view(),
        name="api-held-usage-exclude",
    ),
    path(
        "accounts/<slug:slug>/anomalies/<int:anomaly_id>/release",
        api_spike_guard.AnomalyReleaseApi.as_view(),
        name="api-anomaly-release",
    ),
    path(
        "accounts/<slug:slug>/anomalies/<int:anomaly_id>/exclude",
        api_spike_guard.AnomalyExcludeApi.as_view(),
        name="api-anomaly-exclude",
    ),
    path(
        "accounts/<slug:slug>/spike-guard",
        api_spike_guard.SpikeGuardApi.as_view(),
        name="api-spike-guard",
    ),
    path(
        "accounts/<slug:slug>/entitlements",
        metering_api.EntitlementsApi.as_view(),
        name="api-entitlements",
    ),
    path(
        "accounts/<slug:slug>/invoices",
        billing_api.AccountInvoicesApi.as_view(),
        name="api-account-invoices",
    ),
    path(
        "accounts/<slug:slug>/subscription",
        billing_api.SubscriptionStartApi.as_view(),
        name="api-subscription-start",
    ),
    path(
        "accounts/<slug:slug>/subscription/changes",
        billing_api.SubscriptionChangesApi.as_view(),
        name="api-subscription-changes",
    ),
    path(
        "accounts/<slug:slug>/subscription/changes/<int:change_id>",
        billing_api.SubscriptionChangeApi.as_view(),
        name="api-subscription-change",
    ),
    path("invoices/<int:invoice_id>", billing_api.InvoiceApi.as_view(), name="api-invoice"),
    path(
        "invoices/<int:invoice_id>/pdf", billing_api.InvoicePdfApi.as_view(), name="api-invoice-pdf"
    ),
    path(
        "invoices/<int:invoice_id>/retry",
        billing_api.InvoiceRetryApi.as_view(),
        name="api-invoice-retry",
    ),
    path(
        "invoices/<int:invoice_id>/credit-notes",
        billing_api.InvoiceCreditNotesApi.as_view(),
        name="api-invoice-credit-notes",
    ),
    path(
        "invoices/<int:invoice_id>/confirmation-link",
        billing_api.InvoiceConfirmationLinkApi.as_view(),
        name="api-invoice-confirmation-link",
    ),
    path(
        "accounts/<slug:slug>/payment-method",
        billing_api.PaymentMethodApi.as_view(),
        name="api-payment-method",
    ),
    path("events", metering_api.EventsApi.as_view(), name="api-events"),
    path("plans", plans_api.PlansApi.as_view(), name="api-plans"),
    path("webhook-endpoints", outbox_api.EndpointsApi.as_view(), name="api-webhook-endpoints"),
    path(
        "webhook-endpoints/<str:endpoint_id>",
        outbox_api.EndpointApi.as_view(),
        name="api-webhook-endpoint",
    ),
    path("webhook-deliveries", outbox_api.DeliveriesApi.as_view(), name="api-webhook-deliveries"),
    path(
        "webhook-deliveries/<str:delivery_id>",
        outbox_api.DeliveryApi.as_view(),
        name="api-webhook-delivery",
    ),
    path(
        "webhook-deliveries/<str:delivery_id>/replay",
        outbox_api.DeliveryReplayApi.as_view(),
        name="api-webhook-delivery-replay",
    ),
]
