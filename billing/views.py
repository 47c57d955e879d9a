"""Merchant pages of payments: the secure confirmation page (no login), Retry payment, and the
card form. Thin: parse, call a service, render."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.errors import Conflict, DomainError
from accounts.models import Membership

from . import gateway, payments, tasks, webhooks
from .models import Invoice, InvoiceStatus


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
    context = {
        "invoice": invoice,
        "attempt": attempt,
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


def _billing_invoice(request, invoice_id: int) -> Invoice | None:
    """The invoice if the user manages billing of its account (owner or admin)."""
    return Invoice.objects.filter(
        pk=invoice_id,
        account__memberships__user=request.user,
        account__memberships__role__in=[Membership.Role.OWNER, Membership.Role.ADMIN],
    ).first()


@login_required
@require_POST
def retry_payment(request, invoice_id: int):
    """F3: "Retry payment" on an invoice of the payment history."""
    invoice = _billing_invoice(request, invoice_id)
    if invoice is None:
        return render(request, "404.html", status=404)
    try:
        attempt = payments.invoice_charge(invoice_id=invoice.pk, trigger="retry")
    except Conflict as exc:  # another payment of it is in flight: nothing is sent twice
        messages.info(request, exc.message)
        return redirect("home")
    invoice.refresh_from_db()
    if attempt is None:
        messages.info(request, f"Invoice {invoice.number} has nothing to pay.")
    elif invoice.status == InvoiceStatus.PAID:
        messages.success(request, f"Invoice {invoice.number} is paid. Thank you!")
    elif invoice.status == InvoiceStatus.REQUIRES_CONFIRMATION:
        return redirect(payments.confirmation_path(attempt))
    else:
        reason = attempt.failure_reason or gateway.reason_for(attempt.failure_code)
        messages.error(request, f"The payment failed: {reason}")
    return redirect("home")


@login_required
def payment_method(request, slug: str):
    """The card form: Stripe.js collects the card through a SetupIntent (F3: update, then retry)."""
    membership = (
        Membership.objects.filter(
            user=request.user,
            account__slug=slug,
            role__in=[Membership.Role.OWNER, Membership.Role.ADMIN],
        )
        .select_related("account")
        .first()
    )
    if membership is None:
        return render(request, "404.html", status=404)
    account = membership.account
    if request.method == "POST":
        setup_intent = request.POST.get("setup_intent", "")
        try:
            method = payments.payment_method_set(
                account=account,
                stripe_payment_method=gateway.setup_intent_payment_method(
                    setup_intent=setup_intent
                ),
            )
        except (DomainError, gateway.GatewayError) as exc:
            messages.error(request, f"The card was not saved: {exc}")
            return redirect("payment-method", slug=slug)
        tasks.collect_account_soon(account.pk)
        messages.success(request, f"Saved: {method}. It is used for the next payments.")
        return redirect("home")
    customer = payments.customer_ensure(account=account)
    return render(
        request,
        "billing/payment_method.html",
        {
            "account": account,
            "client_secret": gateway.setup_intent_create(customer=customer),
            "stripe_js_url": settings.STRIPE_JS_URL,
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
            "current": payments.default_payment_method(account.pk),
        },
    )
