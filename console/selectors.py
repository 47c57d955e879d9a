"""What the console reads. Operators see every account: these selectors are the one place that
crosses tenants, and only `console.access.operator_page` views call them."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q
from django.db.models.functions import Coalesce

from accounts import logins
from accounts.models import Account, Membership
from audit.models import AuditEntry
from billing import payments, refunds, statement, tax_corrections, taxing
from billing.invoicing import TRANSITIONS
from billing.models import (
    DISPUTE_CLOSED,
    OVERDUE,
    UNPAID,
    CloseSetAside,
    Dispute,
    Dunning,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentAttempt,
    Refund,
    ShopifyUsageRecord,
    TicketDispute,
    TicketDisputeStatus,
    UsageRecordStatus,
)
from billing.selectors import late_units_shown
from billing.shopify_figures import ShopifyPanel, shopify_panel
from billing.tax_corrections import VatCorrection
from billing.tax_identity import vat_id_status_words
from metering import selectors as metering_selectors
from metering.models import (
    AnomalyStatus,
    Charge,
    Reevaluation,
    SubjectKind,
    UsageAnomaly,
    UsageHold,
)
from plans import meters
from plans.models import ScheduledChange, Subscription, SubscriptionStatusChange
from plans.money import format_money

S = InvoiceStatus
A = PaymentAttempt.Status
# Usage records that need the merchant (a higher cap) or a person (Shopify refused them).
SHOPIFY_STUCK = (UsageRecordStatus.HELD, UsageRecordStatus.FAILED)
PAGE_SIZE = 25
# How long a failed refund stays in the attention queue after it failed.
REFUND_SHOWN = timedelta(days=30)


# --- the attention queue ---------------------------------------------------------------------


@dataclass
class QueueRow:
    invoice: Invoice
    needs: list[str]  # why it is in the queue, in words
    age_days: int
    score: int  # amount × age: what an unpaid invoice costs the longer it waits
    last_attempt: PaymentAttempt | None
    amount_due_minor: int = 0  # the statement of account's figure (credit notes off)


def _attention(kind: str, now: datetime) -> Q:
    # Held (P8): an invoice held over the spending cap, or one with usage held over a Shopify
    # cap (or refused by Shopify) that waits for a raise or for a person, whatever its status.
    shopify_held = Exists(
        ShopifyUsageRecord.objects.filter(invoice=OuterRef("pk"), status__in=SHOPIFY_STUCK)
    )
    held = Q(status=S.OPEN, dunning__held_reason__gt="") | Q(shopify_held)
    # Unknown: Stripe's answer was lost, or a charge has waited longer than any call takes
    # (the reconciliation sweep will ask Stripe; until then a person should know).
    lost = Q(status=A.UNKNOWN) | Q(
        status__in=[A.CREATED, A.SENDING], created_at__lte=now - payments.IN_FLIGHT_TIMEOUT
    )
    unknown = Q(Exists(PaymentAttempt.objects.filter(lost, invoice=OuterRef("pk"))))
    # A refund that failed (its amount became account credit) is shown for REFUND_SHOWN after
    # it failed, so that a person tells the customer or asks for other bank details; one whose
    # answer was lost is shown until the sweep settles it.
    refund_trouble = Q(status__in=refunds.RETURNED, completed_at__gte=now - REFUND_SHOWN) | Q(
        status=refunds.R.UNKNOWN
    )
    refund = Q(
        Exists(Refund.objects.filter(refund_trouble, credit_note__credited_invoice=OuterRef("pk")))
    )
    # A card dispute that is open (evidence is due) or lost with no decision taken yet.
    disputed = Q(
        Exists(
            Dispute.objects.filter(invoice=OuterRef("pk")).filter(
                ~Q(status__in=DISPUTE_CLOSED) | Q(status=Dispute.Status.LOST, decision="")
            )
        )
    )
    return {
        "past_due": Q(status=S.PAST_DUE),
        "requires_confirmation": Q(status=S.REQUIRES_CONFIRMATION),
        "held": held,
        "unknown": unknown,
        "refund_failed": refund,
        "dispute": disputed,
    }.get(kind, Q(status__in=OVERDUE) | held | unknown | refund | disputed)


def _search(q: str) -> Q:
    q = q.strip()
    return (
        Q(number__iexact=q)
        | Q(account__slug__icontains=q)
        | Q(account__name__icontains=q)
        | Q(account__stripe_customer_id=q)
        | Q(account__shopify_shop__shop_domain__iexact=q)
        | Q(Exists(PaymentAttempt.objects.filter(invoice=OuterRef("pk"), stripe_payment_intent=q)))
    )


def attention_queue(*, filters: dict, page: str | int | None, now: datetime) -> Page:
    """Invoices that need a person, filtered, sorted (amount × age by default), paginated.

    Sorting happens in Python over (id, total, issued) triples: amount × age has no portable
    SQL form (intervals times integers differ between PostgreSQL and SQLite), and the queue
    is the unpaid minority of invoices, a few thousand rows at most."""
    invoices = Invoice.objects.filter(kind=InvoiceKind.INVOICE).filter(
        _attention(filters.get("attention") or "", now)
    )
    if filters.get("q"):
        invoices = invoices.filter(_search(filters["q"]))
    if filters.get("currency"):
        invoices = invoices.filter(currency=filters["currency"])
    if filters.get("channel"):
        invoices = invoices.filter(account__billing_channel=filters["channel"])
    if filters.get("plan"):
        invoices = invoices.filter(
            Q(subscription__plan__code=filters["plan"])
            | Q(subscription__edition__code=filters["plan"])
        )
    if filters.get("partner"):
        invoices = invoices.filter(account__partner__name__icontains=filters["partner"])
    if filters.get("tax_id_status"):
        # Accounts without a VAT id are `unchecked` too: "unchecked" means an id VIES was
        # never asked about (not an EU one), not every account without one.
        invoices = invoices.filter(account__tax_id_status=filters["tax_id_status"]).exclude(
            account__vat_id=""
        )
    if filters.get("min_age_days") is not None:
        invoices = invoices.filter(issued_at__lte=now - timedelta(days=filters["min_age_days"]))
    triples = list(invoices.distinct().values_list("pk", "total_minor", "issued_at", "currency"))
    if filters.get("min_amount") is not None:
        from plans.money import currency_exponent

        triples = [
            t for t in triples if t[1] >= filters["min_amount"] * 10 ** currency_exponent(t[3])
        ]
    sort = filters.get("sort") or "score"
    key = {
        "score": lambda t: (-t[1] * _age_seconds(t[2], now), t[0]),
        "amount": lambda t: (-t[1], t[0]),
        "age": lambda t: (t[2], t[0]),
        "recent": lambda t: (-t[2].timestamp(), -t[0]),
    }[sort]
    ids = [t[0] for t in sorted(triples, key=key)]
    # A page of ids first (cheap to sort and count), then the same page's rows put in their place.
    page_obj: Page[Any] = Paginator(ids, PAGE_SIZE).get_page(page)
    loaded = Invoice.objects.select_related(
        "account__partner", "subscription__plan", "subscription__edition", "dunning"
    ).in_bulk(page_obj.object_list)
    last = {}
    for attempt in PaymentAttempt.objects.filter(invoice_id__in=page_obj.object_list).order_by(
        "invoice_id", "number"
    ):
        last[attempt.invoice_id] = attempt
    figures = statement.invoices_figures(loaded.values())
    stuck: dict[int, dict[str, int]] = {}
    for invoice_id, status, amount in ShopifyUsageRecord.objects.filter(
        invoice_id__in=page_obj.object_list, status__in=SHOPIFY_STUCK
    ).values_list("invoice_id", "status", "amount_minor"):
        by_status = stuck.setdefault(invoice_id, {})
        by_status[status] = by_status.get(status, 0) + amount
    waiting: dict[int, list[Dispute]] = {}
    for dispute in Dispute.objects.filter(invoice_id__in=page_obj.object_list).filter(
        ~Q(status__in=DISPUTE_CLOSED) | Q(status=Dispute.Status.LOST, decision="")
    ):
        waiting.setdefault(dispute.invoice_id, []).append(dispute)
    page_obj.object_list = [
        _row(
            loaded[pk],
            last.get(pk),
            now,
            figures[pk].amount_due_minor,
            stuck.get(pk, {}),
            figures[pk].refunds,
            waiting.get(pk, []),
        )
        for pk in page_obj.object_list
    ]
    return page_obj


def _age_seconds(issued_at: datetime, now: datetime) -> int:
    return max(int((now - issued_at).total_seconds()), 0)


def _dunning(invoice: Invoice) -> Dunning | None:
    try:
        return invoice.dunning
    except Dunning.DoesNotExist:
        return None


def _row(
    invoice: Invoice,
    attempt: PaymentAttempt | None,
    now: datetime,
    due: int = 0,
    shopify: dict[str, int] | None = None,
    refunds_made: tuple[statement.RefundRef, ...] = (),
    disputes_waiting: list[Dispute] | None = None,
) -> QueueRow:
    dunning = _dunning(invoice)
    needs = []
    disputes_waiting = disputes_waiting or []
    if invoice.status in OVERDUE:
        needs.append(invoice.get_status_display())
    shopify = shopify or {}
    if shopify.get(UsageRecordStatus.HELD):
        held = format_money(shopify[UsageRecordStatus.HELD], invoice.currency)
        needs.append(f"{held} held over the Shopify cap")
    elif dunning and dunning.held_reason:
        needs.append("held over the cap")
    if shopify.get(UsageRecordStatus.FAILED):
        needs.append("usage record refused by Shopify")
    if attempt and attempt.status == A.UNKNOWN:
        needs.append("outcome unknown")
    elif attempt and attempt.status in payments.IN_FLIGHT:
        needs.append("charge waiting for Stripe")
    for dispute in disputes_waiting:
        money = format_money(dispute.amount_minor, dispute.currency)
        if dispute.is_open:
            due_by = f"{dispute.evidence_due_by:%b %-d, %Y}" if dispute.evidence_due_by else "?"
            needs.append(f"Card dispute of {money} open: evidence due by {due_by}")
        else:
            needs.append(f"Card dispute of {money} lost: decide what happens next")
    for refund in refunds_made:
        money = format_money(refund.amount_minor, invoice.currency)
        if not refund.is_live:
            needs.append(f"Refund of {money} to the card failed (now account credit)")
        elif refund.status == refunds.R.UNKNOWN:
            needs.append(f"Refund of {money}: Stripe's answer lost")
    assert invoice.issued_at is not None  # the queue never lists drafts
    age = _age_seconds(invoice.issued_at, now)
    return QueueRow(
        invoice=invoice,
        needs=needs,
        age_days=age // 86400,
        score=invoice.total_minor * age,
        last_attempt=attempt,
        amount_due_minor=due,
    )


@dataclass
class SetAsides:
    closes: list[CloseSetAside]
    reevaluations: list[Reevaluation]
    reevaluations_total: int


def set_asides(*, limit: int = 20) -> SetAsides:
    """Subscriptions whose close failed and subjects whose re-evaluation failed: both retry
    with backoff on their own; listed so that a person looks at the error."""
    failed = Reevaluation.objects.filter(attempts__gt=0).select_related("account")
    return SetAsides(
        closes=list(
            CloseSetAside.objects.select_related("subscription__account").order_by(
                "first_failed_at"
            )[:limit]
        ),
        reevaluations=list(failed.order_by("failed_at")[:limit]),
        reevaluations_total=failed.count(),
    )


# --- invoice detail --------------------------------------------------------------------------


@dataclass
class Step:
    at: datetime
    what: str


@dataclass
class InvoiceDetail:
    invoice: Invoice
    dunning: Dunning | None
    attempts: list[PaymentAttempt]
    credit_notes: list[Invoice]
    amount_due_minor: int
    figures: statement.InvoiceFigures | None  # the statement of account (None: a draft)
    emails: list[AuditEntry]
    history: list[AuditEntry]
    schedule: list[Step]
    actions: list[str] = field(default_factory=list)
    usage_records: list[ShopifyUsageRecord] = field(default_factory=list)  # Shopify channel


def invoice_detail(*, invoice_id: int, now: datetime) -> InvoiceDetail | None:
    invoice = (
        Invoice.objects.select_related("account", "subscription__plan", "subscription__edition")
        .prefetch_related("lines")
        .filter(pk=invoice_id)
        .first()
    )
    if invoice is None:
        return None
    dunning = _dunning(invoice)
    attempts = list(invoice.attempts.order_by("number"))
    entries = AuditEntry.objects.filter(
        Q(object_type="invoice", object_id=invoice.pk)
        | Q(object_type="paymentattempt", object_id__in=[a.pk for a in attempts])
    )
    figures = statement.invoice_figures(invoice) if invoice.is_final else None
    detail = InvoiceDetail(
        invoice=invoice,
        dunning=dunning,
        attempts=attempts,
        credit_notes=list(invoice.credit_notes.order_by("issued_at")),
        amount_due_minor=figures.amount_due_minor if figures else 0,
        figures=figures,
        emails=list(entries.filter(action="email.sent")),
        history=list(entries.exclude(action="email.sent")),
        schedule=schedule_ahead(invoice=invoice, dunning=dunning, attempts=attempts, now=now),
        usage_records=list(
            invoice.usage_records.select_related("line").order_by("line__position", "part")
        ),
    )
    detail.actions = invoice_actions(detail, now)
    return detail


def schedule_ahead(
    *, invoice: Invoice, dunning: Dunning | None, attempts: list[PaymentAttempt], now: datetime
) -> list[Step]:
    """The retries, reminders and suspension still to come, from the same constants the
    dunning run uses (payments.RETRIES, REMINDERS, SUSPEND_AFTER)."""
    if dunning is None or invoice.status not in OVERDUE:
        return []
    steps = []
    if dunning.next_retry_at and dunning.first_failed_at:
        failures = sum(a.status == A.FAILED for a in attempts)
        for wait in payments.RETRIES.waits_from(max(failures, 1)):
            at = dunning.first_failed_at + wait
            if at >= dunning.next_retry_at:
                steps.append(Step(at, "automatic retry"))
    if dunning.next_reminder_at and dunning.confirmation_requested_at:
        for n, wait in enumerate(payments.REMINDERS.waits_from(1), start=1):
            at = dunning.confirmation_requested_at + wait
            if n > dunning.reminders_sent:
                steps.append(Step(at, f"confirmation reminder {n}"))
    if dunning.suspend_at and invoice.subscription_id:
        steps.append(Step(dunning.suspend_at, "subscription suspended if still unpaid"))
    if dunning.paused_until and dunning.paused_until > now:
        steps = [
            Step(
                max(s.at, dunning.paused_until),
                s.what + (" (after the pause)" if s.at < dunning.paused_until else ""),
            )
            for s in steps
        ]
    return sorted(steps, key=lambda s: s.at)


def invoice_actions(detail: InvoiceDetail, now: datetime) -> list[str]:
    """The actions that make sense for the invoice now (the services re-check each one)."""
    invoice, dunning = detail.invoice, detail.dunning
    if invoice.kind != InvoiceKind.INVOICE or not invoice.is_final:
        return []
    in_flight = any(a.status in payments.IN_FLIGHT for a in detail.attempts)
    held = bool(dunning and dunning.held_reason)
    paused = bool(dunning and dunning.paused_until and dunning.paused_until > now)
    # A payment waiting for the customer's bank is live: "remind" re-sends its link; a
    # second payment beside it could be confirmed too.
    waiting = any(a.status == PaymentAttempt.Status.REQUIRES_ACTION for a in detail.attempts)
    actions = []
    if invoice.status in UNPAID and not in_flight and not held and not waiting:
        actions.append("retry")
    if held and invoice.status in UNPAID:
        actions.append("release-hold")
    if invoice.status in OVERDUE:
        actions += ["remind", "resume" if paused else "pause"]
    if not in_flight and invoice.status in (*UNPAID, S.UNCOLLECTIBLE, S.DISPUTED_LOST):
        actions.append("mark-paid")
    # A credit note may take what earlier ones left of the total, paid or not.
    left = detail.figures.creditable_minor if detail.figures else 0
    creditable = invoice.status in (S.OPEN, S.PAST_DUE, S.PAID) and left > 0
    if not in_flight and creditable:
        actions.append("credit")
    if not in_flight and _vat_correctable(invoice):
        actions.append("vat-give-back")
    if not in_flight and S.VOID in TRANSITIONS[invoice.status]:
        actions.append("void")
    if not in_flight and S.UNCOLLECTIBLE in TRANSITIONS[invoice.status]:
        actions.append("uncollectible")
    return actions


@dataclass(frozen=True)
class CreditRoom:
    creditable_minor: int  # what a further credit note may take, before tax
    charged_vat: bool  # the note adds the invoice's VAT in proportion


def credit_room(invoice: Invoice) -> CreditRoom:
    """What the credit form tells the operator: the most a credit note may take, and whether
    the invoice's VAT comes on top of it."""
    figures = statement.invoice_figures(invoice) if invoice.is_final else None
    # Once its VAT was given back whole (a VAT correction), later notes add no tax.
    corrected = invoice.credit_notes.filter(taxing.TAX_CORRECTED).exists()
    return CreditRoom(
        creditable_minor=figures.creditable_minor if figures else 0,
        charged_vat=invoice.tax_minor > 0 and not corrected,
    )


def _vat_correctable(invoice: Invoice) -> bool:
    # Only an invoice that charged VAT on an unconfirmed VAT id can be listed: the others pay
    # no query for it.
    if not (invoice.vat_id_unconfirmed and invoice.tax_minor > 0):
        return False
    return any(
        row.invoice.pk == invoice.pk and row.correctable
        for row in tax_corrections.vat_corrections_list(account=invoice.account)
    )


# --- VAT to give back ------------------------------------------------------------------------


def vat_to_give_back(*, account: Account | None = None) -> list[VatCorrection]:
    """Invoices that charged VAT because VIES had not confirmed the buyer's VAT id and whose
    VAT was not given back yet, oldest first: every account's, or one account's. Each says
    whether it can be corrected now, or why not."""
    return tax_corrections.vat_corrections_list(account=account)


# --- account detail --------------------------------------------------------------------------


@dataclass
class AccountDetail:
    account: Account
    subscription: Subscription | None
    state_history: list[tuple[datetime, str, str, str, str]]  # at, from, to, reason, who
    entitlements: dict[str, dict]
    usage: object | None
    invoices: list[Invoice]
    history: list[AuditEntry]
    actions: list[str]
    account_statement: statement.AccountStatement | None = None  # owed, credit, its history
    # Members locked out by wrong passwords: username → when the lock ends.
    locked_logins: dict[str, datetime] = field(default_factory=dict)
    shopify: ShopifyPanel | None = None  # Shopify channel: status, cap, balance, held, links
    vat_id_words: str = ""  # what VIES said of the VAT id, in the merchant's page's words
    # Its invoices that charged VAT on a VAT id VIES had not confirmed, not corrected yet.
    vat_corrections: list[VatCorrection] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)  # its card disputes, open first

    @property
    def invoice_rows(self) -> list[tuple[Invoice, statement.InvoiceFigures | None]]:
        figures = self.account_statement.by_id if self.account_statement else {}
        return [(invoice, figures.get(invoice.pk)) for invoice in self.invoices]


def account_detail(*, account_id: int, now: datetime) -> AccountDetail | None:
    account = Account.objects.select_related("partner").filter(pk=account_id).first()
    if account is None:
        return None
    subscription = (
        Subscription.objects.select_related("plan", "edition")
        .filter(account=account)
        # The live one; else the last that ended (PostgreSQL sorts NULLs last by default).
        .order_by(F("ended_at").desc(nulls_first=True), "-started_at")
        .first()
    )
    usage = None
    if subscription is not None and subscription.usage_period_start:
        usage = metering_selectors.usage_summary(
            account=account,
            subscription=subscription,
            start=subscription.usage_period_start,
            end=subscription.usage_period_end,
            now=now,
            late=late_units_shown(subscription=subscription, start=subscription.usage_period_start),
        )
    actions = []
    if subscription is not None:
        if subscription.status in (Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE):
            actions.append("suspend")
        elif subscription.status == Subscription.Status.SUSPENDED:
            actions.append("reactivate")
    locked_logins = logins.usernames_locked(
        usernames=Membership.objects.filter(account=account).values_list(
            "user__username", flat=True
        ),
        now=now,
    )
    if locked_logins:
        actions.append("unlock-logins")
    actions.append("channel")  # the service refuses it while an invoice is unpaid
    return AccountDetail(
        account=account,
        subscription=subscription,
        state_history=_state_history(subscription),
        entitlements=metering_selectors.entitlements(account=account, subscription=subscription),
        usage=usage,
        invoices=list(
            Invoice.objects.filter(account=account)
            .prefetch_related(
                Prefetch("attempts", queryset=PaymentAttempt.objects.order_by("number"))
            )
            .order_by("-issued_at", "-pk")[:50]
        ),
        history=list(AuditEntry.objects.filter(account_id=account.pk)[:100]),
        actions=actions,
        account_statement=statement.account_statement(account=account),
        locked_logins=locked_logins,
        shopify=shopify_panel(account=account, now=now),
        vat_id_words=vat_id_status_words(account=account),
        vat_corrections=vat_to_give_back(account=account),
        disputes=disputes_list(account=account),
    )


def _state_history(subscription: Subscription | None) -> list:
    """The subscription's states, oldest first, with who moved it (from the audit log; rows
    older than the audit log come from the status table, by the system)."""
    if subscription is None:
        return []
    audited = {
        (e.at, e.before, e.after): e
        for e in AuditEntry.objects.filter(
            object_type="subscription", object_id=subscription.pk, action="subscription.status"
        )
    }
    rows = []
    for change in SubscriptionStatusChange.objects.filter(subscription=subscription).order_by(
        "at", "pk"
    ):
        entry = audited.get((change.at, change.from_status, change.to_status))
        who = (entry.actor or entry.source) if entry else "system"
        rows.append((change.at, change.from_status, change.to_status, change.reason, who))
    return rows


# --- the audit log ---------------------------------------------------------------------------


def audit_search(*, q: str = "", action: str = "", page: str | int | None = None) -> Page:
    entries = AuditEntry.objects.all()
    if action:
        entries = entries.filter(action__startswith=action)
    if q.strip():
        q = q.strip()
        accounts = Account.objects.filter(Q(slug__icontains=q) | Q(name__icontains=q))
        entries = entries.filter(
            Q(object_label__icontains=q)
            | Q(actor__icontains=q)
            | Q(reason__icontains=q)
            | Q(account_id__in=accounts.values("pk"))
        )
    return Paginator(entries, 50).get_page(page)


def account_cancellations(*, account: Account) -> list[ScheduledChange]:
    """Every cancellation the account asked for, newest first, with its reason and what became
    of it (scheduled, undone, or took effect)."""
    return list(
        ScheduledChange.objects.filter(subscription__account=account, cancel=True)
        .select_related("subscription__plan", "subscription__edition")
        .order_by("-created_at", "-pk")
    )


def disputes_list(*, account: Account | None = None, limit: int = 200) -> list[Dispute]:
    """Card disputes, open ones first by their evidence deadline (the nearest first), then the
    lost ones still waiting for an operator's decision, then the rest, newest first."""
    rows = Dispute.objects.select_related("invoice__account", "invoice__subscription")
    if account is not None:
        rows = rows.filter(invoice__account=account)
    open_ = list(
        rows.exclude(status__in=DISPUTE_CLOSED).order_by(
            F("evidence_due_by").asc(nulls_last=True), "pk"
        )[:limit]
    )
    undecided = list(rows.filter(status=Dispute.Status.LOST, decision="").order_by("-closed_at"))
    rest = list(
        rows.filter(status__in=DISPUTE_CLOSED)
        .exclude(status=Dispute.Status.LOST, decision="")
        .order_by("-created_at", "-pk")[:limit]
    )
    return open_ + undecided[:limit] + rest


def dispute_actions(dispute: Dispute) -> list[str]:
    """The decisions left to take on a dispute (a lost one, not decided yet)."""
    if dispute.status != Dispute.Status.LOST or dispute.decision:
        return []
    actions = ["another-card", "write-off"]
    subscription = dispute.invoice.subscription
    if subscription is not None and subscription.status in (
        Subscription.Status.ACTIVE,
        Subscription.Status.PAST_DUE,
    ):
        actions.insert(1, "suspend")
    if dispute.invoice.status != "disputed_lost":
        actions = [a for a in actions if a == "suspend"]
    return actions


# --- contested tickets (billing.ticket_disputes) -----------------------------------------------


@dataclass(frozen=True)
class TicketVerdict:
    """One unit of a contested ticket as metering decided it: what accepting would take out."""

    meter: str
    status: str
    period_start: datetime | None
    rules: list[str]


@dataclass
class TicketDisputeRow:
    dispute: TicketDispute
    verdicts: list[TicketVerdict] = field(default_factory=list)


@dataclass
class TicketDisputeQueue:
    open: list[TicketDisputeRow]  # oldest first: the longest waiting at the top
    decided: list[TicketDisputeRow]  # the most recently decided first


def ticket_disputes_queue(*, limit: int = 200, decided: int = 50) -> TicketDisputeQueue:
    """Contested tickets waiting for an operator, oldest first, each with its verdicts (two
    queries for the page, whatever its length), then the last ones decided."""
    rows = TicketDispute.objects.select_related("account", "credit_note")
    waiting = [
        TicketDisputeRow(d)
        for d in rows.filter(status=TicketDisputeStatus.OPEN).order_by("created_at", "pk")[:limit]
    ]
    done = [
        TicketDisputeRow(d)
        for d in rows.exclude(status=TicketDisputeStatus.OPEN).order_by(
            F("resolved_at").desc(nulls_last=True), "-pk"
        )[:decided]
    ]
    by_key = {(r.dispute.account_id, r.dispute.ticket): r for r in waiting}
    if by_key:
        charges = Charge.objects.filter(
            subject_kind=SubjectKind.TICKET,
            account_id__in={a for a, _ in by_key},
            subject__in={t for _, t in by_key},
        ).order_by("meter", "unit")
        for charge in charges:
            row = by_key.get((charge.account_id, charge.subject))
            if row is not None:
                row.verdicts.append(
                    TicketVerdict(
                        meter=meters.meter_heading(charge.meter),
                        status=charge.get_status_display(),
                        period_start=charge.period_start,
                        rules=list(charge.rules),
                    )
                )
    return TicketDisputeQueue(open=waiting, decided=done)


# --- held usage (billing.spike_guard) ----------------------------------------------------------


@dataclass(frozen=True)
class HeldLoopRow:
    """One account's active loop holds sharing a reason (one burst), decided together."""

    account: Account
    key: int  # the oldest hold: the console's actions act on its group
    reason: str
    count: int
    tickets: list[str]
    held_at: datetime
    release_after: datetime


@dataclass(frozen=True)
class HeldDecidedRow:
    account: Account
    what: str
    count: int
    status: str  # released | excluded
    by: str
    at: datetime


@dataclass
class HeldUsageQueue:
    anomalies: list[UsageAnomaly]  # open, oldest first (account selected)
    loops: list[HeldLoopRow]  # oldest first
    decided: list[HeldDecidedRow]  # the most recently decided first


HELD_TICKETS_SHOWN = 5


def held_usage_queue(*, limit: int = 200, decided: int = 50) -> HeldUsageQueue:
    """Units held for review across accounts, the longest waiting first: open spikes, then
    loop holds grouped by account and reason; then the last decisions (spikes, and loop holds
    decided together). A few queries, whatever the length."""
    anomalies = list(
        UsageAnomaly.objects.filter(status=AnomalyStatus.OPEN)
        .select_related("account")
        .order_by("opened_at", "pk")[:limit]
    )
    groups: dict[tuple[int, str], list[UsageHold]] = {}
    active = UsageHold.objects.filter(
        kind=UsageHold.Kind.LOOP, released_at__isnull=True, excluded_at__isnull=True
    ).order_by("held_at", "pk")
    for hold in active:
        groups.setdefault((hold.account_id, hold.reason), []).append(hold)
    loops_decided = _decided_loops(decided)
    accounts = Account.objects.in_bulk({a for a, _ in groups} | {k[0] for k in loops_decided})
    loops = sorted(
        (
            HeldLoopRow(
                account=accounts[account_id],
                key=rows[0].pk,
                reason=reason,
                count=len(rows),
                tickets=[h.subject for h in rows[:HELD_TICKETS_SHOWN]],
                held_at=rows[0].held_at,
                release_after=min(h.release_after for h in rows),
            )
            for (account_id, reason), rows in groups.items()
        ),
        key=lambda row: (row.held_at, row.key),
    )[:limit]
    spikes = list(
        UsageAnomaly.objects.filter(
            status__in=(AnomalyStatus.RELEASED, AnomalyStatus.EXCLUDED),
            resolved_at__isnull=False,
        )
        .select_related("account")
        .order_by("-resolved_at", "-pk")[:decided]
    )
    held = dict(
        UsageHold.objects.filter(anomaly__in=spikes)
        .values("anomaly_id")
        .annotate(n=Count("pk"))
        .values_list("anomaly_id", "n")
    )
    done = [
        HeldDecidedRow(
            account=a.account,
            what=f"Spike: {a.observed:,} {meters.meter_heading(a.meter).lower()} on "
            f"{a.day:%a %-d %b %Y} against a usual {a.baseline:,}",
            count=held.get(a.pk, 0),
            status=a.status,
            by=a.resolved_by,
            at=a.resolved_at or a.opened_at,  # resolved: never None here
        )
        for a in spikes
    ]
    for (account_id, reason, status, at, by), n in loops_decided.items():
        done.append(HeldDecidedRow(accounts[account_id], reason, n, status, by, at))
    done.sort(key=lambda row: row.at, reverse=True)
    return HeldUsageQueue(anomalies=anomalies, loops=loops, decided=done[:decided])


def _decided_loops(most: int) -> dict[tuple[int, str, str, datetime, str], int]:
    """Loop holds decided lately, counted per decision (account, reason, how, when, who):
    one decision ends a burst's holds at one moment."""
    rows: dict[tuple[int, str, str, datetime, str], int] = {}
    recent = (
        UsageHold.objects.filter(kind=UsageHold.Kind.LOOP)
        .filter(Q(released_at__isnull=False) | Q(excluded_at__isnull=False))
        .annotate(decided_at=Coalesce("released_at", "excluded_at"))
        .order_by("-decided_at", "-pk")
        .values_list("account_id", "reason", "released_at", "decided_at", "resolved_by")
    )
    # Bursts are large: read a bounded number of rows, enough for `most` decisions of
    # ordinary sizes.
    for account_id, reason, released_at, decided_at, by in recent[: most * 100]:
        status = "released" if released_at else "excluded"
        key = (account_id, reason, status, decided_at, by)
        rows[key] = rows.get(key, 0) + 1
    return rows
