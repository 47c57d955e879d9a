"""/billing/<slug>/ and its sub-pages. Every view is wrapped by access.billing_page."""

from django.urls import path

from . import shopify_return, views

app_name = "billing"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("usage/", views.usage, name="usage"),
    path("usage/why/", views.why_billed, name="why"),
    path("usage/why/contest", views.ticket_contest, name="ticket-contest"),
    path("usage/contest-bulk", views.tickets_contest_bulk, name="tickets-contest-bulk"),
    path("usage/ai-limits", views.ai_limits, name="ai-limits"),
    path("usage/held", views.held_decide, name="held-decide"),
    path("usage/spike-guard", views.spike_guard_settings, name="spike-guard"),
    path("invoices/", views.invoices, name="invoices"),
    path("invoices/<int:invoice_id>/pdf", views.invoice_pdf, name="invoice-pdf"),
    path("invoices/<int:invoice_id>/retry", views.invoice_retry, name="invoice-retry"),
    path(
        "invoices/<int:invoice_id>/resend-link",
        views.invoice_link_resend,
        name="invoice-link-resend",
    ),
    path("pay-outstanding", views.pay_outstanding, name="pay-outstanding"),
    path("plan/", views.plan, name="plan"),
    path("start/", views.start, name="start"),
    path("add-ons/", views.addons, name="addons"),
    path("change/", views.change, name="change"),
    path("changes/<int:change_id>/cancel", views.change_cancel, name="change-cancel"),
    path("cancel/", views.cancel, name="cancel"),
    path("cancel-subscription", views.subscription_cancel, name="subscription-cancel"),
    path("payment-method", views.payment_method, name="payment-method"),
    path("payment-method/save", views.payment_method_save, name="payment-method-save"),
    path("details/", views.details, name="details"),
    path("details/save", views.details_save, name="details-save"),
    path("shopify/return/", shopify_return.shopify_returned, name="shopify-return"),
    path("shopify/ask-again", views.shopify_ask_again, name="shopify-ask-again"),
    path("shopify/cap-raise", views.shopify_cap_raise, name="shopify-cap-raise"),
]
