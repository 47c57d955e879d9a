"""Payment pages without a login: the secure confirmation page (F2) and Stripe's webhooks.
The merchant's own pages (Retry payment, the card form) are in billing.pages."""

from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.errors import Conflict

from . import gateway, payments, shopify_webhooks, tasks, webhooks
from .models import InvoiceStatus


@csrf_exempt
@require_POST
def stripe_webhook(request):
    try:
        event, pending = webhooks.webhook_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except webhooks.InvalidWebhook as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    if pending:
        tasks.enqueue(tasks.payment_process_webhook, event.stripe_id)
    return HttpResponse('{"received": true}', content_type="application/json")


@csrf_exempt
@require_POST
def shopify_webhook(request):
    """Shopify's webhooks: 401 unless signed with our app's secret (nothing stored then); a
    repeat of a stored delivery is answered 200 and not applied again."""
    try:
        row, pending = shopify_webhooks.shopify_webhook_receive(
            body=request.body, headers=request.headers
        )
    except shopify_webhooks.InvalidShopifyWebhook as exc:
        return HttpResponse(str(exc), status=401, content_type="text/plain")
    if pending:
        tasks.enqueue(tasks.shopify_process_webhook, row.webhook_id)
    return HttpResponse('{"received": true}', content_type="application/json")


def confirm_payment(request, token: str):
    """F2: the page the email links to. Signed and expiring; no login needed."""
    try:
        attempt = payments.attempt_from_token(token)
    except Conflict as exc:
        return render(request, "billing/confirm_payment.html", {"error": exc.message}, status=410)
    if request.method == "POST":  # Stripe.js finished: Stripe, not the browser, says how
        attempt = payments.confirmation_completed(attempt=attempt)
        return redirect("confirm-payment", token=token)
    invoice = attempt.invoice
    # Only the live payment can be confirmed: a replaced one points at its successor.
    live = payments.confirmation_attempt(invoice=invoice)
    context = {
        "invoice": invoice,
        "attempt": attempt,
        "replaced": attempt.status == attempt.Status.CANCELED,
        "live_url": payments.confirmation_path(live) if live and live.pk != attempt.pk else "",
        "needs_confirmation": invoice.status == InvoiceStatus.REQUIRES_CONFIRMATION
        and attempt.status == attempt.Status.REQUIRES_ACTION,
        "stripe_js_url": settings.STRIPE_JS_URL,
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
    }
    if context["needs_confirmation"]:
        intent = gateway.payment_intent_get(payment_intent=attempt.stripe_payment_intent)
        context["client_secret"] = intent.client_secret or attempt.client_secret
        # Real Stripe leaves an off-session SCA intent without its card: Stripe.js needs it again.
        method = payments.default_payment_method(invoice.account_id)
        context["payment_method"] = (
            method.stripe_id if method and intent.intent_status == "requires_payment_method" else ""
        )
    return render(request, "billing/confirm_payment.html", context)
