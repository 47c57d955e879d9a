"""What an operator's action did, in words for the operator who asked: the message the console
shows once it is done ("Paid: $180.00 charged to Visa •••• 4242", "Declined: the card has
insufficient funds. ..."), never a bare "done".

Read from the action's audit row (console.services returns it) and the rows the action
changed, after the fact: the message says what the ledger now holds, not what was hoped for.
A decline is told in the words the merchant got (`PaymentAttempt.failure_reason`, from
`billing.gateway.REASONS`). Nothing here writes.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.utils import dateformat, timezone

from audit.models import AuditEntry
from billing import gateway, payments, statement
from billing.models import Dunning, Invoice, InvoiceStatus, PaymentAttempt, PaymentMethod
from plans.money import format_money

A = PaymentAttempt.Status


@dataclass(frozen=True)
class Outcome:
    level: str  # success | error | warning | info: the colour of the message
    text: str


def _when(at: datetime) -> str:
    return dateformat.format(timezone.localtime(at), "M j, Y H:i") + " UTC"


def _first_lower(sentence: str) -> str:
    # The merchant's words start a sentence of their own; here they follow "Declined: ".
    return sentence[:1].lower() + sentence[1:]


def retry_outcome(
    *,
    invoice: Invoice,
    attempt: PaymentAttempt | None,
    card: str,
    dunning: Dunning | None,
    now: datetime,
) -> Outcome:
    """What "Retry now" came to: paid, declined (why, and what follows), waiting for the
    customer's bank, no answer yet, or not charged (and why)."""
    if attempt is None:
        if invoice.status == InvoiceStatus.PAID:
            return Outcome(
                "success",
                f"Nothing charged: credit notes cover invoice {invoice.number}, so it is settled.",
            )
        if dunning is not None and dunning.held_reason:
            return Outcome(
                "warning",
                f"Not charged, held: {dunning.held_reason} Release the hold to charge it.",
            )
        return Outcome("info", f"Not charged: invoice {invoice.number} has nothing to collect now.")
    amount = format_money(attempt.amount_minor, attempt.currency)
    if attempt.status == A.SUCCEEDED:
        charged = f"{amount} charged to {card}" if card else f"{amount} charged"
        return Outcome("success", f"Paid: {charged}. The customer was emailed the receipt.")
    if attempt.status == A.REQUIRES_ACTION:
        return Outcome(
            "warning",
            "Waiting for the customer to confirm with their bank (3-D Secure): we emailed "
            f"them the link. The {amount} is charged once they confirm.",
        )
    if attempt.status in payments.IN_FLIGHT:
        minutes = int(payments.IN_FLIGHT_TIMEOUT.total_seconds() // 60)
        return Outcome(
            "info",
            f"Sent to Stripe ({amount}), no answer yet: the outcome will show on this page "
            f"once Stripe answers (it is asked again after {minutes} minutes if it does not).",
        )
    if attempt.status == A.FAILED and attempt.failure_code == "stripe_refused":
        return Outcome(
            "error",
            "Not sent: Stripe refused the request itself, so the bank never saw it and no "
            "money was taken. The fault is ours (the error is in the logs), not the card's.",
        )
    if attempt.status == A.FAILED:
        reason = attempt.failure_reason or gateway.reason_for(attempt.failure_code)
        words = [f"Declined: {_first_lower(reason)}"]
        if attempt.is_hard_decline:
            words.append("A hard decline: no automatic retry; the customer needs another card.")
        elif dunning is not None and dunning.next_retry_at is not None:
            if dunning.next_retry_at > now:
                words.append(f"Next automatic retry: {_when(dunning.next_retry_at)}.")
            else:  # its day came while the dunning run had not yet made it
                words.append("The next automatic retry is due: the next dunning run makes it.")
        else:
            words.append("No automatic retry is left.")
        words.append("The customer was emailed the reason.")
        return Outcome("error", " ".join(words))
    return Outcome("info", f"Attempt {attempt.number}: {attempt.get_status_display()}.")


def after_action(entry: AuditEntry, *, label: str) -> Outcome:
    """The message for an action's audit row (`label`, the action's name, when there is
    nothing more specific to say)."""
    said = _SAID.get(entry.action)
    if said is None:
        return Outcome("success", f"{label}: done.")
    text = said(entry)
    return text if isinstance(text, Outcome) else Outcome("success", text)


def _invoice(entry: AuditEntry) -> Invoice:
    return Invoice.objects.select_related("account").get(pk=entry.object_id)


def _after(entry: AuditEntry) -> dict:
    return entry.after if isinstance(entry.after, dict) else {}


def _retried(entry: AuditEntry) -> Outcome:
    invoice = _invoice(entry)
    number = _after(entry).get("attempt")
    attempt = invoice.attempts.filter(number=number).first() if number else None
    card = ""
    if attempt is not None and attempt.payment_method:
        method = PaymentMethod.objects.filter(stripe_id=attempt.payment_method).first()
        card = str(method) if method is not None else ""
    dunning = Dunning.objects.filter(invoice=invoice).first()
    return retry_outcome(
        invoice=invoice, attempt=attempt, card=card, dunning=dunning, now=timezone.now()
    )


def _reminded(entry: AuditEntry) -> str:
    invoice = _invoice(entry)
    if entry.after == InvoiceStatus.REQUIRES_CONFIRMATION:
        what = "the link to confirm the payment with their bank, again"
    else:
        what = "why the payment failed and how to fix it"
    return f"Reminder sent to {invoice.account.billing_email}: {what}."


def _schedule_date(entry: AuditEntry, key: str) -> datetime | None:
    value = _after(entry).get(key)
    return datetime.fromisoformat(value) if value else None


def _paused(entry: AuditEntry) -> str:
    until = _schedule_date(entry, "paused_until")
    return (
        f"Dunning paused until {_when(until) if until else 'the date given'}: "
        "no retries, reminders or suspension before then."
    )


def _resumed(entry: AuditEntry) -> str:
    text = "Dunning resumed: what fell due during the pause runs at the next dunning run."
    retry = _schedule_date(entry, "next_retry_at")
    return text + (f" Next automatic retry: {_when(retry)}." if retry else "")


def _marked_paid(entry: AuditEntry) -> str:
    invoice = _invoice(entry)
    reference = _after(entry).get("reference", "")
    return (
        f"Marked paid out of band (reference {reference}): invoice {invoice.number} is settled "
        "and its retries and reminders stopped."
    )


def _voided(entry: AuditEntry) -> str:
    number = _invoice(entry).number
    return f"Invoice {number} voided: nothing is owed on it, and its retries and reminders stopped."


def _written_off(entry: AuditEntry) -> str:
    number = _invoice(entry).number
    return (
        f"Invoice {number} marked uncollectible: no more retries, reminders or suspension from it."
    )


def _credited(entry: AuditEntry) -> str:
    invoice, after = _invoice(entry), _after(entry)
    amount = after.get("amount")
    issued = f"Credit note {after.get('credit_note', '')} issued" + (
        f" for {format_money(amount, invoice.currency)}" if isinstance(amount, int) else ""
    )
    if entry.before == InvoiceStatus.PAID:
        refund = after.get("refund_to_card")
        if isinstance(refund, int) and refund > 0:
            return f"{issued}: {_refund_words(after, refund, invoice.currency)}"
        return f"{issued}: it is the account's credit now, taken off its next invoices."
    if after.get("status") == InvoiceStatus.PAID:
        return f"{issued}: it covers what was due, so invoice {invoice.number} is settled."
    due = statement.invoice_figures(invoice).amount_due_minor
    return f"{issued}: {format_money(due, invoice.currency)} is left to pay on {invoice.number}."


def _refund_words(after: dict, refund: int, currency: str) -> str:
    """Where a paid invoice's credit went: the part back to the card, the rest as credit."""
    note = Invoice.objects.filter(number=after.get("credit_note")).only("total_minor").first()
    back = f"{format_money(refund, currency)} goes back to the card (a refund sent to Stripe)"
    rest = -note.total_minor - refund if note is not None else 0
    if rest > 0:
        return (
            f"{back}; {format_money(rest, currency)} is the account's credit, taken off its "
            "next invoices."
        )
    return f"{back}."


def _vat_given_back(entry: AuditEntry) -> str:
    invoice, after = _invoice(entry), _after(entry)
    amount = after.get("tax_given_back")
    issued = f"Credit note {after.get('credit_note', '')} issued" + (
        f": {format_money(amount, invoice.currency)} of VAT given back"
        if isinstance(amount, int)
        else ""
    )
    before = entry.before if isinstance(entry.before, dict) else {}
    if before.get("status") == InvoiceStatus.PAID:
        return f"{issued}. It is the account's credit now, taken off its next invoices."
    if after.get("status") == InvoiceStatus.PAID:
        return f"{issued}. It covers what was due, so invoice {invoice.number} is settled."
    due = statement.invoice_figures(invoice).amount_due_minor
    return f"{issued}. {format_money(due, invoice.currency)} is left to pay on {invoice.number}."


def _released(entry: AuditEntry) -> str:
    return (
        f"Hold released: invoice {_invoice(entry).number} is being charged through the normal "
        "collection path; the outcome will show on this page."
    )


def _suspended(entry: AuditEntry) -> str:
    return "Subscription suspended: the helpdesk is switched off until it is reactivated."


def _reactivated(entry: AuditEntry) -> str:
    return "Subscription reactivated and the customer emailed; unpaid invoices stay due."


def _unlocked(entry: AuditEntry) -> str:
    names = entry.after if isinstance(entry.after, list) else []
    who = ", ".join(str(n) for n in names) or "the locked members"
    return f"Logins unlocked: {who} can log in again now."


def _channel_changed(entry: AuditEntry) -> str:
    after = _after(entry)
    if after.get("billing_channel") == "shopify":
        return (
            f"Billing channel: {entry.object_label} now pays through Shopify "
            f"({after.get('shop_domain', 'its shop')}); the merchant approves an app "
            "subscription next."
        )
    return (
        f"Billing channel: {entry.object_label} now pays by card; the next charge needs a card "
        "(the merchant is asked for one)."
    )


def _dispute_decided(entry: AuditEntry) -> str:
    after = _after(entry)
    words = {
        "another_card": "the merchant is asked for another card; the invoice is past due, "
        "never retried automatically",
        "suspend": "the subscription is suspended; the invoice stays owed",
        "write_off": "the invoice is written off (uncollectible)",
    }
    return f"Dispute on {entry.object_label}: {words.get(after.get('decision', ''), 'decided')}."


def _ticket_decided(entry: AuditEntry) -> str:
    after = _after(entry)
    ticket = after.get("ticket", "")
    if after.get("status") == "rejected":
        return (
            f"Ticket {ticket}: dispute rejected, it stays billed. The merchant was emailed "
            "your reason."
        )
    return (
        f"Ticket {ticket}: dispute accepted, {after.get('outcome', 'excluded from billing')}. "
        "The merchant was emailed."
    )


def _usage_decided(entry: AuditEntry) -> str:
    after = _after(entry)
    held = after.get("held", 0)
    units = f"{held:,} held unit{'s' if held != 1 else ''}"
    if after.get("status") == "released":
        return (
            f"Released: {units} of {entry.object_label} billed, on their period or as late "
            "usage on the next invoice."
        )
    return f"Excluded: {units} of {entry.object_label} never billed."


_SAID: dict[str, Callable[[AuditEntry], str | Outcome]] = {
    "operator.usage_released": _usage_decided,
    "operator.usage_excluded": _usage_decided,
    "operator.ticket_dispute_accepted": _ticket_decided,
    "operator.ticket_dispute_rejected": _ticket_decided,
    "operator.dispute_decided": _dispute_decided,
    "operator.retry_now": _retried,
    "operator.remind_now": _reminded,
    "operator.pause_dunning": _paused,
    "operator.resume_dunning": _resumed,
    "operator.mark_paid": _marked_paid,
    "operator.void": _voided,
    "operator.mark_uncollectible": _written_off,
    "operator.credit_note": _credited,
    "operator.release_hold": _released,
    "operator.vat_given_back": _vat_given_back,
    "operator.suspend": _suspended,
    "operator.reactivate": _reactivated,
    "operator.unlock_logins": _unlocked,
    "operator.channel_change": _channel_changed,
}
