"""The operator console's pages: thin views over console.selectors and console.services.

An action is two requests: GET shows what it will do and asks for the reason (the
confirmation); POST, with the CSRF token and a one-time form token, does it once."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from accounts.errors import DomainError
from accounts.form_tokens import already_done, first_submission
from accounts.models import Account
from billing import evidence
from billing.models import Dispute, Invoice, TicketDispute
from metering.holds import HOLD_DAYS
from metering.models import UsageAnomaly, UsageHold
from plans.meters import meter_label
from plans.models import Subscription

from . import forms, outcomes, selectors, services
from .access import operator_page
from .figures import collections_figures


def _not_found(request):
    return render(request, "404.html", status=404)


@operator_page()
def queue(request):
    form = forms.QueueFilter(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    now = timezone.now()
    page = selectors.attention_queue(filters=filters, page=request.GET.get("page"), now=now)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "console/queue.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "set_asides": selectors.set_asides(),
            "tab": "queue",
        },
    )


@operator_page()
def invoice_detail(request, invoice_id: int):
    detail = selectors.invoice_detail(invoice_id=invoice_id, now=timezone.now())
    if detail is None:
        return _not_found(request)
    actions = [(slug, INVOICE_ACTIONS[slug].label) for slug in detail.actions]
    return render(
        request, "console/invoice.html", {"d": detail, "actions": actions, "tab": "queue"}
    )


@operator_page()
def account_detail(request, account_id: int):
    detail = selectors.account_detail(account_id=account_id, now=timezone.now())
    if detail is None:
        return _not_found(request)
    every = ACCOUNT_ACTIONS | MEMBER_ACTIONS
    actions = [(slug, every[slug].label) for slug in detail.actions]
    cancellations = selectors.account_cancellations(account=detail.account)
    return render(
        request,
        "console/account.html",
        {
            "d": detail,
            "actions": actions,
            "cancellations": cancellations,
            "dispute_rows": _dispute_rows(detail.disputes),
            "tab": "queue",
        },
    )


AUDIT_KINDS = [
    ("", "Everything"),
    ("operator.", "Operator actions"),
    ("invoice.", "Invoices"),
    ("payment_attempt.", "Payments"),
    ("subscription.", "Subscriptions"),
    ("entitlement.", "Entitlements"),
    ("email.", "Emails"),
]


@operator_page()
def audit_log(request):
    q, action = request.GET.get("q", ""), request.GET.get("action", "")
    page = selectors.audit_search(q=q, action=action, page=request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "console/audit.html",
        {
            "page": page,
            "q": q,
            "action": action,
            "kinds": AUDIT_KINDS,
            "query": query.urlencode(),
            "tab": "audit",
        },
    )


@operator_page()
def vat_to_give_back(request):
    return render(
        request,
        "console/vat.html",
        {"corrections": selectors.vat_to_give_back(), "tab": "vat"},
    )


@operator_page()
def disputes(request):
    rows = _dispute_rows(selectors.disputes_list())
    return render(request, "console/disputes.html", {"rows": rows, "tab": "disputes"})


def _dispute_rows(disputes: list[Dispute]) -> list[tuple[Dispute, list[tuple[str, str]]]]:
    """Each dispute with the decisions left on it: (slug, label)."""
    return [
        (d, [(slug, DISPUTE_ACTIONS[slug].label) for slug in selectors.dispute_actions(d)])
        for d in disputes
    ]


@operator_page()
def dispute_evidence(request, dispute_id: int):
    dispute = Dispute.objects.filter(pk=dispute_id).first()
    if dispute is None:
        return _not_found(request)
    name, content = evidence.evidence_pack(dispute=dispute)
    response = HttpResponse(content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@operator_page()
def figures(request):
    return render(
        request,
        "console/figures.html",
        {"f": collections_figures(now=timezone.now()), "tab": "figures"},
    )


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    label: str
    explains: str  # what it does, shown on the confirmation
    form: type[forms.ActionForm]
    run: Callable  # (target, cleaned_data) → audit entry


def _until(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


INVOICE_ACTIONS = {
    "retry": Action(
        "Retry now",
        "Charges the account's default card now, through the normal collection path. "
        "The customer gets the receipt, or the failure email with the reason.",
        forms.ActionForm,
        lambda i, d: services.invoice_retry_now(invoice=i, reason=d["reason"]),
    ),
    "remind": Action(
        "Send a reminder now",
        "Emails the customer now: the confirmation link again, or the failed payment's reason "
        "and how to fix it. The automatic schedule is unchanged.",
        forms.ActionForm,
        lambda i, d: services.invoice_remind_now(invoice=i, reason=d["reason"]),
    ),
    "pause": Action(
        "Pause dunning",
        "No automatic retries, reminders or suspension for this invoice until the date; "
        "suspension is pushed to the pause's end at the earliest.",
        forms.PauseForm,
        lambda i, d: services.dunning_pause(
            invoice=i, until=_until(d["until"]), reason=d["reason"]
        ),
    ),
    "resume": Action(
        "Resume dunning",
        "Ends the pause now: steps that fell due during it run at the next dunning run.",
        forms.ActionForm,
        lambda i, d: services.dunning_resume(invoice=i, reason=d["reason"]),
    ),
    "mark-paid": Action(
        "Mark paid out of band",
        "Records a payment received outside Stripe (e.g. a bank transfer) and settles the "
        "invoice: schedules stop, a suspension it caused is lifted.",
        forms.MarkPaidForm,
        lambda i, d: services.invoice_mark_paid(
            invoice=i, reference=d["reference"], reason=d["reason"]
        ),
    ),
    "void": Action(
        "Void",
        "Cancels the invoice: nothing is owed on it any more. Schedules stop and a suspension "
        "it caused is lifted. This cannot be undone.",
        forms.ActionForm,
        lambda i, d: services.invoice_void(invoice=i, reason=d["reason"]),
    ),
    "uncollectible": Action(
        "Mark uncollectible",
        "Stops collecting: no more retries, reminders or suspension from this invoice. The "
        "subscription keeps its state; a later payment out of band still settles it.",
        forms.ActionForm,
        lambda i, d: services.invoice_mark_uncollectible(invoice=i, reason=d["reason"]),
    ),
    "credit": Action(
        "Issue a credit note",
        "Issues a numbered credit note. On an unpaid invoice it is netted at once (the next "
        "charge asks for what is left); on a paid one the part you refund goes back to the "
        "card (capped by what Stripe says is still refundable) and the rest becomes the "
        "account's credit, taken off its next invoices. The customer reads the description on "
        "the credit note and is emailed when the refund succeeds; the reason stays in the "
        "audit log.",
        forms.CreditForm,
        lambda i, d: services.invoice_credit(
            invoice=i,
            amount_minor=d["amount"],
            description=d["description"],
            reason=d["reason"],
            refund_minor=d.get("refund") or 0,
        ),
    ),
    "vat-give-back": Action(
        "Give back the VAT",
        "VIES has confirmed the VAT id this invoice charged VAT on: the buyer was entitled to "
        "the reverse charge. Issues a numbered credit note of the invoice's VAT, whole (no "
        "amount before tax), naming VIES's confirmation. On an unpaid invoice it is netted at "
        "once; on a paid one it becomes the account's credit. The reason stays in the audit "
        "log.",
        forms.ActionForm,
        lambda i, d: services.invoice_vat_give_back(invoice=i, reason=d["reason"]),
    ),
    "release-hold": Action(
        "Release the hold",
        "Approves this charge over the account's spending cap (P8): the invoice is charged by "
        "the normal collection path at once.",
        forms.ActionForm,
        lambda i, d: services.invoice_release_hold(invoice=i, reason=d["reason"]),
    ),
}

ACCOUNT_ACTIONS = {
    "suspend": Action(
        "Suspend",
        "Suspends the subscription now, as exhausted retries would: the helpdesk is switched "
        "off. The customer is emailed when an unpaid invoice is the cause.",
        forms.ActionForm,
        lambda s, d: services.subscription_suspend(subscription=s, reason=d["reason"]),
    ),
    "reactivate": Action(
        "Reactivate",
        "Reactivates the subscription now and emails the customer; unpaid invoices stay due.",
        forms.ActionForm,
        lambda s, d: services.subscription_reactivate(subscription=s, reason=d["reason"]),
    ),
}

# Acting on the account itself, with or without a live subscription.
MEMBER_ACTIONS = {
    "unlock-logins": Action(
        "Unlock logins",
        "Lets the members locked out by wrong passwords log in again now instead of after the "
        'cool-off (docs/deploy.md, "Security"). Unlock only when the member asked: the lock '
        "is what stops a password guesser. A lock on a network address stays; the admin's "
        "Access attempts list clears it.",
        forms.ActionForm,
        lambda a, d: services.member_logins_unlock(account=a, reason=d["reason"]),
    ),
    "channel": Action(
        "Change billing channel",
        "Moves the account to the other channel: card through Stripe, or its Shopify store "
        '(docs/shopify.md, "Changing channel"). Refused while any invoice is unpaid. To '
        "Stripe: the app subscription is cancelled at Shopify and the next charge needs a "
        "card. To Shopify: once the card subscription has ended; the merchant then approves "
        "an app subscription.",
        forms.ChannelForm,
        lambda a, d: services.account_channel_change(
            account=a,
            to=d["to"],
            reason=d["reason"],
            shop_domain=d.get("shop_domain", ""),
            access_token=d.get("access_token", ""),
        ),
    ),
}


OUTCOME_LEVELS = {
    "success": messages.SUCCESS,
    "info": messages.INFO,
    "warning": messages.WARNING,
    "error": messages.ERROR,
}


def _act(request, *, action: Action, target, currency: str, back: str, context: dict):
    if request.method == "POST":
        form = action.form(request.POST, currency=currency, target=target)
        if form.is_valid():
            if not first_submission(request):
                return already_done(request, back)
            try:
                entry = action.run(target, form.cleaned_data)
            except DomainError as exc:  # Conflict too: the state moved on, or bad input
                messages.error(request, str(exc))
                return redirect(back)
            # What happened, in words: "Paid: $180.00 charged to Visa •••• 4242", a decline
            # and its reason, the date a pause ends; never a bare "done".
            outcome = outcomes.after_action(entry, label=action.label)
            messages.add_message(request, OUTCOME_LEVELS[outcome.level], outcome.text)
            return redirect(back)
    else:
        form = action.form(currency=currency, target=target)
    return render(
        request,
        "console/confirm.html",
        {"action": action, "form": form, "back": back, **context},
        status=400 if request.method == "POST" else 200,
    )


def _decide(decision: str) -> Callable:
    return lambda d, data: services.dispute_decide(
        dispute=d, decision=decision, reason=data["reason"]
    )


DISPUTE_ACTIONS = {
    "another-card": Action(
        "Ask for another card",
        "The invoice becomes past due, without retries: the merchant is emailed that their "
        "bank reversed the payment and asked to add another card and pay it from the Billing "
        "& Usage page. Nothing charges it automatically.",
        forms.ActionForm,
        _decide("another_card"),
    ),
    "suspend": Action(
        "Suspend the subscription",
        "Suspends the subscription now, as exhausted retries would; the merchant is told. The "
        "invoice stays owed.",
        forms.ActionForm,
        _decide("suspend"),
    ),
    "write-off": Action(
        "Write off",
        "Marks the invoice uncollectible: nothing more is asked for it. A later payment out of "
        "band still settles it.",
        forms.ActionForm,
        _decide("write_off"),
    ),
}


@operator_page(methods=("GET", "POST"))
def dispute_action(request, dispute_id: int, action: str):
    dispute = Dispute.objects.select_related("invoice__account").filter(pk=dispute_id).first()
    if dispute is None or action not in DISPUTE_ACTIONS:
        return _not_found(request)
    invoice = dispute.invoice
    return _act(
        request,
        action=DISPUTE_ACTIONS[action],
        target=dispute,
        currency=dispute.currency,
        back=reverse("console:disputes"),
        context={"invoice": invoice, "account": invoice.account, "tab": "disputes"},
    )


@operator_page()
def ticket_disputes(request):
    queue = selectors.ticket_disputes_queue()
    return render(
        request,
        "console/ticket_disputes.html",
        {"queue": queue, "actions": TICKET_DISPUTE_ACTIONS, "tab": "ticket-disputes"},
    )


TICKET_DISPUTE_ACTIONS = {
    "accept": Action(
        "Accept",
        "The ticket is excluded from billing, on every re-evaluation. In its open period the "
        "period is simply rated without it; once its period was invoiced, a credit note gives "
        "back what it made (only when it was in overage and removing it lowers the blocks "
        "billed), otherwise the merchant's allowance is restored with no charge change. The "
        "merchant is emailed the outcome; your reason stays in the audit log.",
        forms.ActionForm,
        lambda d, data: services.ticket_dispute_decide(
            dispute=d, accept=True, reason=data["reason"]
        ),
    ),
    "reject": Action(
        "Reject",
        "The ticket stays billed. The merchant reads your reason on “Why was this billed?” and "
        "in the email we send them; write it for them.",
        forms.TicketRejectForm,
        lambda d, data: services.ticket_dispute_decide(
            dispute=d, accept=False, reason=data["reason"]
        ),
    ),
}


@operator_page(methods=("GET", "POST"))
def ticket_dispute_action(request, ticket_dispute_id: int, action: str):
    dispute = TicketDispute.objects.select_related("account").filter(pk=ticket_dispute_id).first()
    if dispute is None or action not in TICKET_DISPUTE_ACTIONS:
        return _not_found(request)
    return _act(
        request,
        action=TICKET_DISPUTE_ACTIONS[action],
        target=dispute,
        currency=dispute.account.currency,
        back=reverse("console:ticket-disputes"),
        context={"account": dispute.account, "ticket_dispute": dispute, "tab": "ticket-disputes"},
    )


@operator_page()
def held_usage(request):
    queue = selectors.held_usage_queue()
    return render(
        request,
        "console/held_usage.html",
        {"queue": queue, "tab": "held-usage", "hold_days": HOLD_DAYS.days},
    )


_RELEASE = (
    "The held units count again: billed on their period while it is open, or as late usage "
    "on the account's next invoice once it closed. The merchant sees the decision, with your "
    "name, on the Usage tab; your reason stays in the audit log."
)
_EXCLUDE = (
    "The held units are never billed: each held ticket becomes an accepted dispute (it was "
    "never billed, so nothing is credited). The merchant sees the decision, with your name, "
    "on the Usage tab; your reason stays in the audit log."
)
HELD_ANOMALY_ACTIONS = {
    "release": Action(
        "Release",
        _RELEASE,
        forms.ActionForm,
        lambda a, d: services.held_anomaly_decide(anomaly=a, release=True, reason=d["reason"]),
    ),
    "exclude": Action(
        "Exclude",
        _EXCLUDE,
        forms.ActionForm,
        lambda a, d: services.held_anomaly_decide(anomaly=a, release=False, reason=d["reason"]),
    ),
}
HELD_LOOP_ACTIONS = {
    "release": Action(
        "Release",
        _RELEASE,
        forms.ActionForm,
        lambda h, d: services.held_loop_decide(hold=h, release=True, reason=d["reason"]),
    ),
    "exclude": Action(
        "Exclude",
        _EXCLUDE,
        forms.ActionForm,
        lambda h, d: services.held_loop_decide(hold=h, release=False, reason=d["reason"]),
    ),
}


@operator_page(methods=("GET", "POST"))
def held_anomaly_action(request, anomaly_id: int, action: str):
    anomaly = UsageAnomaly.objects.select_related("account").filter(pk=anomaly_id).first()
    if anomaly is None or action not in HELD_ANOMALY_ACTIONS:
        return _not_found(request)
    what = (
        f"{anomaly.held:,} {meter_label(anomaly.meter).lower()} held from "
        f"{anomaly.day:%a %-d %b %Y} ({anomaly.observed:,} against a usual {anomaly.baseline:,})"
    )
    return _act(
        request,
        action=HELD_ANOMALY_ACTIONS[action],
        target=anomaly,
        currency=anomaly.account.currency,
        back=reverse("console:held-usage"),
        context={"account": anomaly.account, "held_what": what, "tab": "held-usage"},
    )


@operator_page(methods=("GET", "POST"))
def held_loop_action(request, hold_id: int, action: str):
    hold = (
        UsageHold.objects.select_related("account")
        .filter(pk=hold_id, kind=UsageHold.Kind.LOOP)
        .first()
    )
    if hold is None or action not in HELD_LOOP_ACTIONS:
        return _not_found(request)
    return _act(
        request,
        action=HELD_LOOP_ACTIONS[action],
        target=hold,
        currency=hold.account.currency,
        back=reverse("console:held-usage"),
        context={
            "account": hold.account,
            "held_what": f"held tickets of a suspected loop ({hold.reason})",
            "tab": "held-usage",
        },
    )


@operator_page(methods=("GET", "POST"))
def invoice_action(request, invoice_id: int, action: str):
    invoice = Invoice.objects.select_related("account").filter(pk=invoice_id).first()
    if invoice is None or action not in INVOICE_ACTIONS:
        return _not_found(request)
    back = reverse("console:invoice", args=[invoice.pk])
    return _act(
        request,
        action=INVOICE_ACTIONS[action],
        target=invoice,
        currency=invoice.currency,
        back=back,
        context={"invoice": invoice, "account": invoice.account, "tab": "queue"},
    )


@operator_page(methods=("GET", "POST"))
def account_action(request, account_id: int, action: str):
    back = reverse("console:account", args=[account_id])
    if action in MEMBER_ACTIONS:
        account = Account.objects.filter(pk=account_id).first()
        if account is None:
            return _not_found(request)
        return _act(
            request,
            action=MEMBER_ACTIONS[action],
            target=account,
            currency=account.currency,
            back=back,
            context={"account": account, "tab": "queue"},
        )
    subscription = (
        Subscription.objects.select_related("account")
        .filter(account_id=account_id, ended_at__isnull=True)
        .first()
    )
    if subscription is None or action not in ACCOUNT_ACTIONS:
        return _not_found(request)
    return _act(
        request,
        action=ACCOUNT_ACTIONS[action],
        target=subscription,
        currency=subscription.account.currency,
        back=back,
        context={"account": subscription.account, "tab": "queue"},
    )
