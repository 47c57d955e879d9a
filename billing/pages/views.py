"""The Billing & Usage page and its sub-pages. Thin: check who asks (access.billing_page),
read through selectors, write through the existing services, render.

Every charge the page triggers goes through `payments.invoice_charge(trigger="retry")`, the one
collection path (an upgrade's or a start again's first charge with "upgrade" or "restart"); a
payment already in flight for an invoice answers `Conflict`, shown as a flash message.
"""

import re
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from accounts import logins
from accounts import services as account_services
from accounts.errors import Conflict, DomainError, NotFound
from accounts.form_tokens import already_done, first_submission
from accounts.models import TaxIdStatus, TermsSource
from accounts.terms import card_authorisation
from metering import selectors as metering_selectors
from metering.models import UsageAnomaly
from metering.validation import EARLIEST
from plans.meters import meter_label
from plans.money import format_money
from plans.periods import format_day, format_last_day
from plans.selectors import subscription_course, subscription_current

from .. import (
    actions,
    changes,
    gateway,
    payments,
    restart,
    shopify_billing,
    shopify_usage,
    spike_guard,
    tax_identity,
    ticket_disputes,
)
from ..models import Invoice, InvoiceStatus
from ..pdf import render_invoice_pdf
from ..selectors import invoice_document
from . import selectors
from .access import billing_page
from .forms import (
    AiLimitsForm,
    BillingDetailsForm,
    CancelForm,
    ContestBulkForm,
    ContestForm,
    HeldDecisionForm,
    SpikeGuardForm,
    TicketLookupForm,
)

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def _url(name: str, access, **kwargs) -> str:
    return reverse(f"billing:{name}", kwargs={"slug": access.account.slug, **kwargs})


def _page(request, access, template: str, context: dict, *, tab: str, status: int = 200):
    """Every billing page carries the account, the user's rights, the tabs and the banner of
    scheduled changes (P7)."""
    base = {
        "account": access.account,
        "access": access,
        "tab": tab,
        "scheduled": selectors.scheduled_changes(account=access.account),
        # On the Shopify channel every tab says so (no card banners) and the overview shows
        # the panel; None for a card account (no query).
        "shopify": selectors.shopify_panel(account=access.account, now=timezone.now()),
    }
    if "subscription" not in context:
        base["subscription"] = subscription_current(account=access.account)
    page = {**base, **context}
    # Units held for review (or spikes billed under "alert only") are said on every tab.
    page["held_banners"] = selectors.held_banners(
        account=access.account, subscription=page["subscription"], now=timezone.now()
    )
    return render(request, template, page, status=status)


# --- overview -------------------------------------------------------------------------------


@billing_page()
def overview(request, access):
    subscription = subscription_current(account=access.account)
    data = selectors.overview(account=access.account, now=timezone.now(), subscription=subscription)
    return _page(
        request,
        access,
        "billing/overview.html",
        {"o": data, "subscription": subscription},
        tab="overview",
    )


# --- usage ----------------------------------------------------------------------------------


@billing_page()
def usage(request, access):
    return _usage_page(request, access)


def _usage_page(request, access, ai_form=None, bulk_form=None, guard_form=None, status=200):
    subscription = subscription_current(account=access.account)
    now = timezone.now()
    data = selectors.usage(
        account=access.account,
        now=now,
        subscription=subscription,
        month=_usage_month(request.GET.get("period"), now=now),
    )
    if ai_form is None and subscription is not None:
        ai_form = AiLimitsForm(
            initial={
                "at_limit": subscription.ai_at_limit,
                "monthly_limit": subscription.ai_monthly_limit,
            }
        )
    return _page(
        request,
        access,
        "billing/usage.html",
        {
            "u": data,
            "lookup": TicketLookupForm(),
            "subscription": subscription,
            "ai": ai_form,
            "contested": selectors.contested_tickets(account=access.account),
            "contested_shown": selectors.CONTESTED_SHOWN,
            "bulk": bulk_form or ContestBulkForm(),
            "held": selectors.held_usage(account=access.account),
            "guard": guard_form or _guard_form(access),
        },
        tab="usage",
        status=status,
    )


def _usage_month(value: str | None, *, now) -> str | None:
    """`?period=YYYY-MM` of the picker; anything else shows the default period."""
    match = _MONTH.fullmatch(value or "")
    if match is None or not EARLIEST.year <= int(match[1]) <= now.year + 1:
        return None
    return value


@billing_page(change=True, methods=("POST",), back="usage")
def ai_limits(request, access, *, back: str):
    """Z9: keep or pause at the automated-resolution limit, and the account's own monthly
    limit; the caps are re-applied at once to this period's resolutions."""
    subscription = subscription_current(account=access.account)
    if subscription is None or not subscription.edition_id:
        messages.error(request, "Automated-resolution limits come with per-agent editions.")
        return redirect(back)
    form = AiLimitsForm(request.POST)
    if not form.is_valid():
        return _usage_page(request, access, ai_form=form, status=400)
    if not first_submission(request):  # claimed after validation (see billing_page)
        return already_done(request, back)
    actions.ai_limits_set(
        account=access.account,
        subscription=subscription,
        at_limit=form.cleaned_data["at_limit"],
        monthly_limit=form.cleaned_data["monthly_limit"],
    )
    messages.success(request, "Saved: the automated-resolution limits apply from now on.")
    return redirect(back + "#resolutions")


def _guard_form(access) -> SpikeGuardForm:
    saved = spike_guard.spike_guard_settings(account=access.account)
    return SpikeGuardForm(
        initial={name: getattr(saved, name) for name in SpikeGuardForm.base_fields}
    )


@billing_page(change=True, methods=("POST",), back="usage", once=True)
def held_decide(request, access, *, back: str):
    """Release (bill) or exclude (never bill) units held for review: one spike, or one loop's
    held tickets, through billing.spike_guard. One already decided (by someone else, or after
    14 days) is said, never decided twice."""
    here = back + "#held"
    form = HeldDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, " ".join(str(e) for e in form.non_field_errors()) or "Choose what to decide."
        )
        return redirect(here)
    release = form.cleaned_data["decision"] == "release"
    if form.cleaned_data["anomaly"]:
        anomaly = UsageAnomaly.objects.filter(
            account=access.account, pk=form.cleaned_data["anomaly"]
        ).first()
        if anomaly is None:
            return render(request, "404.html", status=404)
        what = f"{anomaly.held:,} {meter_label(anomaly.meter).lower()}"
        try:
            decide = spike_guard.anomaly_release if release else spike_guard.anomaly_exclude
            decide(anomaly=anomaly)
        except Conflict as exc:
            messages.error(request, exc.message)
            return redirect(here)
    else:
        holds = metering_selectors.loop_hold_group(
            account_id=access.account.pk, hold_id=form.cleaned_data["hold"]
        )
        decided = (
            (spike_guard.holds_release if release else spike_guard.holds_exclude)(holds=holds)
            if holds
            else []
        )
        if not decided:
            messages.error(request, "These tickets were decided already: nothing more to do.")
            return redirect(here)
        what = f"{len(decided):,} ticket{'s' if len(decided) != 1 else ''}"
    if release:
        messages.success(
            request,
            f"Released: {what} billed, on this period, or on the next invoice where their "
            "period is closed.",
        )
    else:
        messages.success(request, f"Excluded: {what} never billed.")
    return redirect(here)


@billing_page(change=True, methods=("POST",), back="usage")
def spike_guard_settings(request, access, *, back: str):
    """The spike guard's settings: hold or alert only, the loop's window, the spike's k and c.
    Out of bounds, the form comes back saying what to fix."""
    form = SpikeGuardForm(request.POST)
    if not form.is_valid():
        return _usage_page(request, access, guard_form=form, status=400)
    if not first_submission(request):  # claimed after validation (see billing_page)
        return already_done(request, back + "#spike-guard")
    try:
        spike_guard.spike_guard_settings_save(account=access.account, **form.cleaned_data)
    except DomainError as exc:
        form.add_error(_field_of(exc, form), exc.message)
        return _usage_page(request, access, guard_form=form, status=400)
    messages.success(request, "Saved: the spike guard uses these settings from now on.")
    return redirect(back + "#spike-guard")


@billing_page()
def why_billed(request, access):
    """ "Why was this billed?": a ticket's verdict per meter with the rules in words, and its
    disputes. htmx asks for the fragment; without JavaScript the full page answers."""
    return _why_page(request, access, TicketLookupForm(request.GET or None))


def _why_page(request, access, lookup: TicketLookupForm, contest_form=None, status=200):
    context: dict = {"lookup": lookup, "verdicts": None, "contest": None}
    if lookup.is_valid():
        ticket = lookup.cleaned_data["ticket"]
        verdicts = selectors.ticket_explanation(account=access.account, ticket=ticket)
        context.update(
            ticket=ticket,
            verdicts=verdicts,
            contest=selectors.ticket_contest(
                account=access.account, ticket=ticket, verdicts=verdicts
            ),
            contest_form=contest_form or ContestForm(initial={"ticket": ticket}),
            holds=selectors.ticket_holds(account=access.account, ticket=ticket),
        )
    if getattr(request, "htmx", False):
        return render(
            request,
            "billing/_why.html",
            {**context, "account": access.account, "access": access},
            status=status,
        )
    return _page(request, access, "billing/why.html", context, tab="usage", status=status)


@billing_page(change=True, methods=("POST",), back="why")
def ticket_contest(request, access, *, back: str):
    """ "Contest this ticket": filed for an operator to decide, or accepted at once when the
    helpdesk's own events prove it. What cannot be contested (not billed, already contested,
    its invoice more than 30 days old) is the form's error, in the service's words."""
    form = ContestForm(request.POST)
    lookup = TicketLookupForm({"ticket": request.POST.get("ticket", "")})
    if not form.is_valid():
        return _why_page(request, access, lookup, contest_form=form, status=400)
    ticket = form.cleaned_data["ticket"]
    here = f"{back}?{urlencode({'ticket': ticket})}#disputes"
    if not first_submission(request):  # claimed after validation (see billing_page)
        return already_done(request, here)
    try:
        dispute = ticket_disputes.ticket_dispute_open(
            account=access.account,
            ticket=ticket,
            reason=form.cleaned_data["reason"],
            comment=form.cleaned_data["comment"],
        )
    except DomainError as exc:
        form.add_error(_field_of(exc, form), exc.message)
        return _why_page(request, access, lookup, contest_form=form, status=400)
    if dispute.status == "accepted":
        messages.success(request, f"Ticket {ticket} contested and accepted: {dispute.decision}")
    else:
        messages.success(
            request,
            f"Ticket {ticket} contested: we will look at it and email "
            f"{access.account.billing_email} the decision. It stays billed until then.",
        )
    return redirect(here)


def _field_of(exc: DomainError, form) -> str | None:
    """The visible field a refusal names, or None: the form's own error, above it."""
    field = exc.details.get("field")
    if field in form.fields and not form.fields[field].widget.is_hidden:
        return field
    return None


@billing_page(change=True, methods=("POST",), back="usage")
def tickets_contest_bulk(request, access, *, back: str):
    """ "Contest in bulk": each billed ticket of a requester or a time range filed as if
    alone; the page says how many were filed and which were skipped, and why."""
    form = ContestBulkForm(request.POST)
    if not form.is_valid():
        return _usage_page(request, access, bulk_form=form, status=400)
    if not first_submission(request):  # claimed after validation (see billing_page)
        return already_done(request, back + "#contested")
    data = form.cleaned_data
    try:
        result = ticket_disputes.ticket_disputes_open_bulk(
            account=access.account,
            reason=data["reason"],
            comment=data["comment"],
            requester=data["requester"] or "",
            start=data["start"],
            end=data["end"],
        )
    except DomainError as exc:
        form.add_error(_field_of(exc, form), exc.message)
        return _usage_page(request, access, bulk_form=form, status=400)
    for level, text in _bulk_words(result):
        messages.add_message(request, level, text)
    return redirect(back + "#contested")


_SKIPPED_SHOWN = 10  # the rest are counted: a wave's refusals are mostly the same words


def _bulk_words(result: ticket_disputes.BulkResult) -> list[tuple[int, str]]:
    said = []
    accepted = sum(1 for d in result.opened if d.status == "accepted")
    if result.opened:
        n = len(result.opened)
        text = f"{n} ticket{'s' if n != 1 else ''} contested"
        if accepted:
            text += f", {accepted} of them accepted at once (the helpdesk's events prove it)"
        said.append((messages.SUCCESS, text + "."))
    if result.skipped:
        n = len(result.skipped)
        listed = " ".join(why for _, why in result.skipped[:_SKIPPED_SHOWN])
        more = n - _SKIPPED_SHOWN
        said.append(
            (
                messages.WARNING,
                f"{n} ticket{'s' if n != 1 else ''} skipped: {listed}"
                + (f" And {more} more." if more > 0 else ""),
            )
        )
    return said


# --- invoices -------------------------------------------------------------------------------


@billing_page()
def invoices(request, access):
    account_statement = selectors.account_credit(account=access.account)
    rows = selectors.invoice_rows(account=access.account, account_statement=account_statement)
    if access.account.pays_through_shopify:
        # Usage statements: each shows the usage records that bill it through Shopify.
        records = selectors.invoice_records(
            account=access.account, invoice_ids=[row.invoice.pk for row in rows]
        )
        for row in rows:
            row.usage_records = records.get(row.invoice.pk, [])
    return _page(
        request,
        access,
        "billing/invoices.html",
        {
            "rows": rows,
            "due_minor": account_statement.amount_owed_minor,
            "statement": account_statement,
        },
        tab="invoices",
    )


@billing_page(invoice=True)
def invoice_pdf(request, access, invoice: Invoice):
    content = render_invoice_pdf(invoice_document(invoice=invoice))
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="invoice-{invoice.number}.pdf"'
    return response


def _charge(request, access, invoice: Invoice) -> str | None:
    """Charge one invoice through the composer and flash what happened. Returns the
    confirmation page's path when the bank wants the customer (F2)."""
    try:
        payment = actions.invoice_pay(account=access.account, invoice=invoice)
    except payments.AwaitingConfirmation as exc:
        # The payment already made waits for the customer: confirming it is how to pay.
        messages.info(request, exc.message)
        return exc.path or None
    except DomainError as exc:  # another payment of this invoice is in flight
        messages.warning(request, exc.message)
        return None
    return _flash(request, payment)


_LEVELS = {
    "paid": messages.SUCCESS,
    "confirm": messages.INFO,
    "processing": messages.WARNING,
    "failed": messages.ERROR,
    "not_charged": messages.WARNING,
}


def _flash(request, payment: actions.Payment) -> str | None:
    level = _LEVELS[payment.outcome]
    if payment.outcome == "not_charged" and payment.invoice.status == InvoiceStatus.PAID:
        level = messages.INFO
    messages.add_message(request, level, payment.message)
    return payment.confirm_path or None


_NO_CARD_ON_SHOPIFY = (
    "This account pays through Shopify: there is no card to charge or save. Shopify bills you "
    "on your Shopify bill."
)


@billing_page(change=True, methods=("POST",), invoice=True, back="invoices", once=True)
def invoice_retry(request, access, invoice: Invoice, *, back: str):
    if access.account.pays_through_shopify:
        messages.error(request, _NO_CARD_ON_SHOPIFY)
        return redirect(back)
    if payments.default_payment_method(access.account.pk) is None:
        return _no_card(request, access)
    confirm = _charge(request, access, invoice)
    return redirect(confirm or _next(request, back))


@billing_page(change=True, methods=("POST",), invoice=True, back="invoices", once=True)
def invoice_link_resend(request, access, invoice: Invoice, *, back: str):
    """ "Email the link again": the same confirmation link, rate-limited (F2)."""
    try:
        actions.confirmation_link_resend(invoice=invoice)
    except DomainError as exc:
        messages.warning(request, exc.message)
    else:
        messages.success(
            request, f"We emailed the confirmation link again to {access.account.billing_email}."
        )
    return redirect(back)


def _no_card(request, access):
    """Charging without a card would only record a failure (and make the account past due)."""
    messages.error(request, "Add a card first: there is nothing to charge the payment to.")
    return redirect(_url("payment-method", access))


@billing_page(change=True, methods=("POST",), back="overview", once=True)
def pay_outstanding(request, access, *, back: str):
    """ "Pay all outstanding": each unpaid invoice, oldest first, through the composer."""
    if access.account.pays_through_shopify:
        messages.error(request, _NO_CARD_ON_SHOPIFY)
        return redirect(back)
    try:
        done = actions.outstanding_pay(account=access.account)
    except payments.NoPaymentMethod:
        return _no_card(request, access)
    if not done:
        messages.info(request, "Nothing to pay: no invoice is waiting for a charge.")
    confirm = None
    for payment in done:  # the composer stops at the one the bank wants confirmed
        confirm = _flash(request, payment)
    return redirect(confirm or back)


# --- plan and add-ons -----------------------------------------------------------------------


@billing_page()
def plan(request, access):
    subscription = subscription_current(account=access.account)
    options = []
    if subscription is not None and subscription.plan_id:
        options = selectors.plan_options(account=access.account, subscription=subscription)
    annual_saving = 0
    current = next((o for o in options if o.is_current), None)
    if current is not None:
        annual_saving = current.monthly_minor * 12 - current.annual_minor
    ending = selectors.subscription_ending(subscription=subscription) if subscription else None
    ended = selectors.subscription_ended(account=access.account) if subscription is None else None
    return _page(
        request,
        access,
        "billing/plan.html",
        {
            "ended": ended,
            "start_options": selectors.start_options(account=access.account) if ended else [],
            "options": options,
            "current": current,
            "annual_saving_minor": annual_saving,
            "ending": ending,
            "subscription": subscription,
        },
        tab="plan",
    )


@billing_page(change=True, methods=("GET", "POST"), back="plan")
def start(request, access, *, back: str):
    """Start again after the subscription ended: the plan's first cycle from today, its fee
    paid at once through the one collection path, the features switched back on."""
    source = request.POST if request.method == "POST" else request.GET
    plan_code, interval = source.get("plan"), source.get("interval")
    try:
        preview = restart.subscription_restart_preview(
            account=access.account, plan_code=plan_code, interval=interval
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(_url("overview", access) if exc.code == "subscription_live" else back)
    card = payments.default_payment_method(access.account.pk)
    if request.method == "GET":
        return _page(
            request,
            access,
            "billing/start.html",
            {"preview": preview, "card": card, "back": back},
            tab="plan",
        )
    if not first_submission(request):  # claimed once the request is known to apply
        return already_done(request, _url("overview", access))
    try:
        started = actions.subscription_start_again(
            account=access.account,
            plan_code=plan_code,
            interval=interval,
            collect="now",
            card_required=True,
        )
    except payments.NoPaymentMethod as exc:
        messages.error(request, exc.message)
        return redirect(_url("payment-method", access))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    if started.shopify is not None:  # nothing starts before Shopify says the merchant approved
        return redirect(started.confirmation_url)
    messages.success(
        request,
        f"Welcome back: you are on {preview.plan.name} from today. The helpdesk, automation "
        "and campaigns are switched on again.",
    )
    confirm = _flash(request, started.payment) if started.payment else None
    return redirect(confirm or _url("overview", access))


@billing_page()
def addons(request, access):
    subscription = subscription_current(account=access.account)
    options = []
    if subscription is not None and subscription.plan_id:
        options = selectors.addon_options(account=access.account, subscription=subscription)
        used = selectors.usage(account=access.account, now=timezone.now())
        by_meter = {row.meter: row for row in used.meters} if used else {}
        for option in options:
            option.usage = by_meter.get(option.addon.meter)
    # After the end, the tab leads to starting again (add-ons come with a plan).
    ended = selectors.subscription_ended(account=access.account) if subscription is None else None
    return _page(
        request,
        access,
        "billing/addons.html",
        {"options": options, "ended": ended, "subscription": subscription},
        tab="addons",
    )


def _change_request(data) -> changes.ChangeRequest | None:
    plan_code = data.get("plan") or None
    interval = data.get("interval") or None
    addon = data.get("addon") or None
    addons: tuple[tuple[str, str | None], ...] = ()
    if addon:
        addons = ((addon, data.get("tier") or None),)
    if not (plan_code or interval or addons):
        return None
    return changes.ChangeRequest(plan=plan_code, interval=interval, addons=addons)


def _change_words(access, request_: changes.ChangeRequest) -> str:
    return selectors.change_words(
        account=access.account,
        plan=request_.plan,
        interval=request_.interval,
        addons=request_.addons,
    )


@billing_page(change=True, methods=("GET", "POST"))
def change(request, access):
    """Confirm a change: an upgrade shows its prorated amount and is paid at once (P6); a
    downgrade shows the warning label, then is scheduled for the end of the cycle (P7)."""
    source = request.POST if request.method == "POST" else request.GET
    back = _url("addons" if source.get("addon") else "plan", access)
    change_request = _change_request(source)
    if change_request is None:
        messages.error(request, "Choose a plan, an interval or an add-on tier to change.")
        return redirect(back)
    try:
        preview = changes.subscription_change_preview(
            account=access.account, request=change_request
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    if preview.kind == "none":
        messages.info(request, "That is what you have already: nothing to change.")
        return redirect(back)
    card = payments.default_payment_method(access.account.pk)
    if request.method == "GET":
        return _page(
            request,
            access,
            "billing/change.html",
            {
                "preview": preview,
                "words": _change_words(access, change_request),
                "fields": {k: v for k, v in source.items() if k != "form_token"},
                "card": card,
                "back": back,
            },
            tab="addons" if source.get("addon") else "plan",
        )
    if not first_submission(request):  # claimed once the request is known to apply
        return already_done(request, _url("overview", access))
    try:
        changed = actions.subscription_change(
            account=access.account, request=change_request, collect="now", card_required=True
        )
    except payments.NoPaymentMethod as exc:
        messages.error(request, exc.message)
        return redirect(_url("payment-method", access))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    if changed.shopify is not None:  # nothing changes before the merchant approves at Shopify
        return redirect(changed.confirmation_url)
    result = changed.result
    assert result is not None  # the card channel changes at once
    replaced = "".join(f" It replaces the scheduled change ({c})." for c in result.superseded)
    if result.effective == "period_end":
        messages.success(
            request,
            f"Scheduled: {_change_words(access, change_request)} from "
            f"{format_day(result.effective_at)}. You can cancel it until "
            f"{format_last_day(result.effective_at)}.{replaced}",
        )
        return redirect(_url("overview", access))
    words = _change_words(access, change_request)
    messages.success(request, f"Done: {words} from now on.{replaced}")
    confirm = _flash(request, changed.payment) if changed.payment else None
    return redirect(confirm or _url("overview", access))


@billing_page(change=True, methods=("POST",), back="overview", once=True)
def change_cancel(request, access, change_id: int, *, back: str):
    try:
        undone = actions.scheduled_change_cancel(account=access.account, change_id=change_id)
    except NotFound:
        return render(request, "404.html", status=404)
    except Conflict as exc:
        messages.info(request, exc.message)
        return redirect(back)
    if undone.cancel:
        messages.success(
            request,
            "Your subscription continues: it renews from "
            f"{format_day(undone.effective_at)} as before.",
        )
    else:
        messages.success(request, "The scheduled change is cancelled: nothing changes.")
    return redirect(_next(request, back))


@billing_page(change=True, methods=("GET", "POST"), back="plan")
def cancel(request, access, *, back: str):
    """The cancellation's confirmation step (no JavaScript needed): the last day of service,
    no further fees, the last period's usage and the final invoice, an optional reason; the
    form posts back here."""
    if request.method == "POST":
        return _cancel_confirmed(request, access, back=back)
    return _cancel_page(request, access, CancelForm())


def _cancel_page(request, access, form: CancelForm, status: int = 200):
    subscription = subscription_current(account=access.account)
    back = _url("plan", access)
    if subscription is None:
        messages.info(request, "There is no subscription to cancel.")
        return redirect(back)
    course = subscription_course(subscription)
    if course.state == "ends":
        messages.info(
            request, f"Your subscription already ends: it runs until {format_last_day(course.at)}."
        )
        return redirect(back)
    preview = selectors.cancel_preview(
        account=access.account, subscription=subscription, now=timezone.now()
    )
    return _page(
        request,
        access,
        "billing/cancel.html",
        {"c": preview, "form": form, "subscription": subscription},
        tab="plan",
        status=status,
    )


@billing_page(change=True, methods=("POST",), back="plan")
def subscription_cancel(request, access, *, back: str):
    """The cancel action's first address (before the confirmation step had one): the same."""
    return _cancel_confirmed(request, access, back=back)


def _cancel_confirmed(request, access, *, back: str):
    """Cancel at the end of the cycle, as confirmed: scheduled like a downgrade, with the
    reason given; undone from the banner."""
    form = CancelForm(request.POST)
    if not form.is_valid():
        return _cancel_page(request, access, form, status=400)
    if not first_submission(request):  # claimed after validation (see billing_page)
        return already_done(request, back)
    try:
        change, new = actions.subscription_cancel(
            account=access.account,
            reason=form.cleaned_data["reason"],
            comment=form.cleaned_data["comment"],
        )
    except DomainError as exc:  # no live subscription any more
        messages.error(request, exc.message)
        return redirect(back)
    until = format_last_day(change.effective_at)
    if new:
        messages.success(
            request,
            f"Cancelled: your subscription runs until {until}, the last day of the billing "
            "cycle, then ends; no further fees are charged. We emailed a confirmation to "
            f"{access.account.billing_email}. You can undo this until then.",
        )
    else:
        messages.info(request, f"Your subscription already ends: it runs until {until}.")
    return redirect(_url("overview", access))


def _next(request, back: str) -> str:
    """Where a form that names the page it was sent from (`next`) returns once done: that page
    when it is one of the billing pages, `back` otherwise (never another site)."""
    page = request.POST.get("next", "")
    return page if page.startswith("/billing/") else back


# --- payment method -------------------------------------------------------------------------


@billing_page(methods=("GET",))
def payment_method(request, access):
    """The card on file; owners and admins update it with Stripe.js through a SetupIntent
    (3-D Secure included): card data never reaches our servers. An account that pays through
    Shopify has no card: the page says so, and how it pays, instead of a form."""
    if access.account.pays_through_shopify:
        return _page(request, access, "billing/payment_method.html", {}, tab="payment")
    context = {"card": payments.default_payment_method(access.account.pk)}
    if access.can_change:
        customer = payments.customer_ensure(account=access.account)
        context.update(
            client_secret=gateway.setup_intent_create(customer=customer),
            stripe_js_url=settings.STRIPE_JS_URL,
            publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
            terms=card_authorisation(),
        )
    return _page(request, access, "billing/payment_method.html", context, tab="payment")


def _terms_refusal(request) -> str | None:
    """Why the card cannot be saved under the terms as posted, or None: the box (whose value
    is the version the page showed) must be ticked, for the version in force."""
    terms = card_authorisation()
    ticked = request.POST.get("terms_version", "")
    if not ticked:
        return (
            "The card was not saved: tick the box authorising us to charge it under the Terms "
            "of Service, then save it again."
        )
    if ticked != terms.version:
        return (
            f"The card was not saved: the Terms of Service changed (now version {terms.version})"
            " since the page was shown. Read them, tick the box and save the card again."
        )
    return None


@billing_page(change=True, methods=("POST",), back="payment-method", once=True)
def payment_method_save(request, access, *, back: str):
    if access.account.pays_through_shopify:
        messages.error(request, _NO_CARD_ON_SHOPIFY)
        return redirect(back)
    refusal = _terms_refusal(request)
    if refusal is not None:
        messages.error(request, refusal)
        return redirect(back)
    ip_address, user_agent = logins.request_origin(request)
    accepted_by = account_services.Acceptor(
        source=TermsSource.MERCHANT_PAGE,
        user=request.user,
        ip_address=ip_address,
        user_agent=user_agent,
    )
    try:
        saved = actions.payment_method_save(
            account=access.account,
            stripe_payment_method=gateway.setup_intent_payment_method(
                setup_intent=request.POST.get("setup_intent", "")
            ),
            accepted_by=accepted_by,
        )
    except (DomainError, gateway.GatewayError) as exc:
        messages.error(request, f"The card was not saved: {exc}")
        return redirect(back)
    except Exception:  # noqa: BLE001 - a forged or unknown SetupIntent id: say so, no 500
        messages.error(request, "The card was not saved: the card form did not finish.")
        return redirect(back)
    messages.success(request, f"Saved: {saved.method}. It is used for the next payments.")
    if saved.unpaid:
        total = format_money(saved.unpaid_minor, access.account.currency)
        count = len(saved.unpaid)
        messages.info(
            request,
            f"{count} unpaid invoice{'s' if count > 1 else ''} ({total}) can be paid "
            "with it now: press “Pay all outstanding”.",
        )
    return redirect(_url("overview", access))


# --- billing details ------------------------------------------------------------------------


@billing_page(methods=("GET",))
def details(request, access):
    account = access.account
    form = BillingDetailsForm(
        initial={f: getattr(account, f) for f in account_services.BILLING_DETAIL_FIELDS}
    )
    return _page(
        request, access, "billing/details.html", _details_context(form, access), tab="details"
    )


def _details_context(form: BillingDetailsForm, access) -> dict:
    """The form, and what VIES said of the VAT id on file (not of one being typed)."""
    account = access.account
    return {
        "form": form,
        "vat_id_status": account.tax_id_status if account.vat_id else "",
        "vat_id_words": tax_identity.vat_id_status_words(account=account),
    }


@billing_page(change=True, methods=("POST",), back="details")
def details_save(request, access, *, back: str):
    form = BillingDetailsForm(request.POST)
    if not form.is_valid():
        return _page(
            request,
            access,
            "billing/details.html",
            _details_context(form, access),
            tab="details",
            status=400,
        )
    if not first_submission(request):  # claimed after validation (see billing_page)
        return already_done(request, back)
    account = tax_identity.account_billing_details_save(
        account=access.account,
        **{f: form.cleaned_data[f] for f in account_services.BILLING_DETAIL_FIELDS},
    )
    messages.success(request, "Billing details saved: the next invoices show them.")
    if account.tax_id_status == TaxIdStatus.PENDING:
        messages.info(request, "We are checking the VAT id with the EU's VIES service.")
    return redirect(back)


# --- paid through Shopify -------------------------------------------------------------------


@billing_page(change=True, methods=("POST",), back="overview", once=True)
def shopify_ask_again(request, access, *, back: str):
    """After Shopify declined or expired the app subscription: ask for the same plan and
    add-ons again and send the merchant straight to Shopify's approval page."""
    panel = selectors.shopify_panel(account=access.account, now=timezone.now())
    if panel is None or not panel.can_ask_again or panel.shown is None:
        messages.info(request, "Nothing to ask for again: no declined or expired subscription.")
        return redirect(back)
    terms = panel.shown.terms
    try:
        asked = shopify_billing.shopify_subscribe(
            account=access.account,
            plan_code=terms.get("plan", ""),
            addons=terms.get("addons") or None,
            return_url=request.build_absolute_uri(_url("shopify-return", access)),
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    return redirect(asked.confirmation_url)


@billing_page(change=True, methods=("POST",), back="overview", once=True)
def shopify_cap_raise(request, access, *, back: str):
    """Usage is held over the approved cap: ask Shopify for a higher cap and send the merchant
    to approve it there (the held part is posted once Shopify says it was raised)."""
    if not access.account.pays_through_shopify:
        messages.info(request, "This account pays by card: it has no Shopify cap.")
        return redirect(back)
    try:
        confirmation_url = shopify_usage.cap_raise_request(account=access.account)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    return redirect(confirmation_url)
