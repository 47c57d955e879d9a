"""Partner API: invoices."""

from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import logins
from accounts.api_fields import (
    CountryField,
    NewestFirstPagination,
    TextField,
    UsStateField,
    WholeNumberField,
    money,
)
from accounts.api_schema import MoneyOut, PeriodOut, paginated
from accounts.errors import Conflict, Forbidden
from accounts.idempotency import idempotent
from accounts.models import ApiKeyScope, BillingChannel, TaxIdStatus, TermsSource
from accounts.selectors import account_get
from accounts.services import Acceptor
from accounts.tax_identity import tax_identity_problems, vat_id_problems
from accounts.vat import vat_id_compact
from metering import api as metering_api
from outbox.services import invoice_tax_data
from plans import api as plans_api
from plans import api_schema as catalog_schema
from plans.api import ScheduledChangeOut, SubscriptionOut, subscription_out
from plans.tax import Treatment

from . import (
    actions,
    changes,
    payments,
    phrases,
    selectors,
    shopify_billing,
    shopify_figures,
    statement,
    tax_identity,
)
from .models import (
    AttemptStatus,
    Invoice,
    InvoiceKind,
    InvoiceReason,
    InvoiceStatus,
    Refund,
    RefundStatus,
    ShopifyStatus,
    ShopifyUsageRecord,
    UsageRecordStatus,
)
from .pdf import render_invoice_pdf


def _held(invoice: Invoice) -> dict | None:
    """P8: an invoice over the spending cap is not charged; say so, and why."""
    dunning = getattr(invoice, "dunning", None)  # no row: never held
    if dunning is None or not dunning.held_reason:
        return None
    return {"reason": dunning.held_reason, "at": dunning.held_at}


def invoice_out(
    invoice: Invoice,
    *,
    detail: bool = True,
    figures: statement.InvoiceFigures | None = None,
    records: list[dict] | None = None,
) -> dict:
    """An invoice as the API shows it; `figures`: its statement figures, when the caller read
    the account's statement already (a list), else read here; `records` likewise: its Shopify
    usage records."""
    currency = invoice.currency
    if figures is None:
        figures = statement.invoice_figures(invoice)
    if records is None:
        records = _usage_records([invoice.pk]).get(invoice.pk, [])
    body: dict[str, Any] = {
        "id": invoice.pk,
        "number": invoice.number,
        "account": invoice.account.slug,
        "kind": invoice.kind,
        "reason": invoice.reason,
        "status": invoice.status,
        "period": {"start": invoice.period_start, "end": invoice.period_end},
        "covers": [
            {"what": cover.what, "start": cover.start, "end": cover.end}
            for cover in phrases.invoice_covers(invoice)
        ],
        "description": invoice.description,
        "issued_at": invoice.issued_at,
        # The tax frozen at issue, in the webhooks' words (one builder for both).
        **invoice_tax_data(invoice),
        "total": money(invoice.total_minor, currency),
        # The statement of account: credit notes against it, charged through Stripe, left.
        "credited": money(figures.credited_minor, currency),
        "amount_paid": money(figures.paid_minor + figures.settled_otherwise_minor, currency),
        "amount_due": money(figures.amount_due_minor, currency),
        "refunded": money(figures.refunded_minor, currency),
        "note": invoice.note,
        "credited_invoice": invoice.credited_invoice.number if invoice.credited_invoice else None,
        "held": _held(invoice),
        "shopify_usage_records": records,
    }
    if detail:
        body["lines"] = [
            {
                "description": line.description,
                "kind": line.kind,
                "meter": line.meter or None,
                "quantity": line.quantity,
                "unit_price": money(line.unit_price_minor, currency),
                "amount": money(line.amount_minor, currency),
                "rules": line.rules,
                "period": {"start": line.period_start, "end": line.period_end},
            }
            for line in invoice.lines.all()
        ]
        body["status_history"] = [
            {"from": c.from_status, "to": c.to_status, "at": c.at, "reason": c.reason}
            for c in invoice.status_changes.all()
        ]
        body["payment_attempts"] = [
            {
                "number": a.number,
                "trigger": a.trigger,
                "status": a.status,
                "amount": money(a.amount_minor, a.currency),
                "failure_code": a.failure_code or None,
                "failure_reason": a.failure_reason or None,
                "created_at": a.created_at,
                "completed_at": a.completed_at,
            }
            for a in invoice.attempts.all()
        ]
        attempt = payments.confirmation_attempt(invoice=invoice)
        body["confirmation_url"] = payments.confirmation_url(attempt) if attempt else None
        body["refunds"] = [refund_out(r) for r in selectors.invoice_refunds(invoice=invoice)]
    # One schema, one builder: the answer goes out through the serializer the schema is
    # drawn from, so a field the schema does not name cannot be sent, nor one left out.
    return (InvoiceOut if detail else InvoiceSummaryOut)(body).data


def refund_out(refund: Refund) -> dict:
    return {
        "id": refund.pk,
        "credit_note": refund.credit_note.number,
        "amount": money(refund.amount_minor, refund.currency),
        "status": refund.status,
        "failure_reason": refund.failure_reason or None,
        "created_at": refund.created_at,
        "completed_at": refund.completed_at,
    }


def _usage_records(invoice_ids: list[int]) -> dict[int, list[dict]]:
    """The Shopify usage records of these invoices (one query), by invoice, in line order."""
    by_invoice: dict[int, list[dict]] = {}
    for record in ShopifyUsageRecord.objects.filter(invoice_id__in=invoice_ids).order_by(
        "line__position", "part"
    ):
        by_invoice.setdefault(record.invoice_id, []).append(
            {
                "id": record.pk,
                "amount": money(record.amount_minor, record.currency),
                "status": record.status,
                "shopify_id": record.shopify_gid or None,
            }
        )
    return by_invoice


class UsageRecordOut(serializers.Serializer):
    id = serializers.IntegerField()
    amount = MoneyOut()
    status = serializers.ChoiceField(
        choices=UsageRecordStatus.choices,
        help_text="posted: Shopify has it (shopify_id); held: over the approved cap, posted "
        "after a raise (P8); created, sending, unknown: being sent (a lost answer is settled "
        "by asking Shopify); failed: Shopify refused it, an operator looks.",
    )
    shopify_id = serializers.CharField(
        allow_null=True, help_text="Shopify's AppUsageRecord GID once posted."
    )


class HeldOut(serializers.Serializer):
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class CoverOut(serializers.Serializer):
    what = serializers.ChoiceField(
        choices=[phrases.USAGE, phrases.FEES],
        help_text="usage: billed in arrears, for days that ended; fees: billed in advance.",
    )
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(help_text="Exclusive: the last day covered is the one before.")


class TaxRateOut(serializers.Serializer):
    rate = serializers.CharField(
        help_text='The rate in percent, as a decimal string: "20", "6.5", "0" (reverse charge).'
    )
    # DRF's metaclass pops declared fields off the class, so this `label` never shadows
    # Field.label at run time; mypy only sees the class body.
    label = serializers.CharField(  # type: ignore[assignment]
        help_text='As the invoice prints it: "VAT FR 20 %", "Reverse charge", "WA sales tax 6.5 %".'
    )
    taxable_amount = MoneyOut(help_text="The base: the sum of the lines taxed at this rate.")
    tax_amount = MoneyOut(
        help_text="The tax on that base, computed once on the sum and rounded half up."
    )


class NationalTaxRateOut(serializers.Serializer):
    # DRF's metaclass pops declared fields off the class (see TaxRateOut).
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="The label of the `tax[]` entry this converts."
    )
    tax_amount = MoneyOut(help_text="That entry's tax in euros, rounded half up once.")


class EcbRateOut(serializers.Serializer):
    # Field.source too, like `label` above: popped by DRF's metaclass, seen by mypy.
    source = serializers.ChoiceField(choices=[("ECB", "ECB")])  # type: ignore[assignment]
    currency = serializers.CharField(help_text="The invoice's currency.")
    units_per_eur = serializers.CharField(
        help_text='Units of `currency` for one euro, as a decimal string: "1.0856".'
    )
    published_on = serializers.DateField(
        help_text="The day ECB published the rate: the latest on or before the issue date."
    )


class VatInEurOut(serializers.Serializer):
    tax_total = MoneyOut(help_text="The VAT due in euros: the sum of `tax[].tax_amount`.")
    tax = NationalTaxRateOut(many=True)
    exchange_rate = EcbRateOut(
        allow_null=True,
        help_text="The ECB euro reference rate used; null when no rate was known at issue "
        '(the invoice says "VAT in EUR: rate unavailable" and `tax_total` is 0).',
    )


class InvoiceSummaryOut(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField(allow_null=True)
    account = serializers.SlugField()
    kind = serializers.ChoiceField(choices=InvoiceKind.choices)
    reason = serializers.ChoiceField(choices=InvoiceReason.choices)
    status = serializers.ChoiceField(choices=InvoiceStatus.choices)
    period = PeriodOut(
        help_text="The period the invoice is for: a period close's usage month (its fees "
        "cover the next cycle), a start's or an upgrade's fee days, a credit note's span of "
        "the lines it credits. What it covers, line by line: `covers`."
    )
    covers = CoverOut(
        many=True,
        help_text="What the invoice covers, usage first then fees, as every page, email and "
        'PDF says it ("Usage Nov 1 – Nov 30, 2026", "Fees Dec 1 – Dec 31, 2026"); a credit '
        "note covers what the invoice it credits covers.",
    )
    description = serializers.CharField(
        allow_blank=True, help_text="A credit note: what it is for, in the customer's words."
    )
    issued_at = serializers.DateTimeField(allow_null=True)
    # Tax (docs/tax.md): decided once at issue and frozen; a credit note's amounts are negative.
    subtotal = MoneyOut(
        help_text="The taxable lines, tax excluded (prices are tax-exclusive). Account credit "
        "applied is not in it: it settles the total after tax."
    )
    tax = TaxRateOut(
        many=True,
        help_text="One entry per rate: its base and its tax. Empty for an invoice issued before "
        "tax and on the Shopify channel (Shopify invoices the tax on its charges).",
    )
    tax_total = MoneyOut(help_text="The sum of `tax[].tax_amount`.")
    tax_treatment = serializers.ChoiceField(
        choices=[("", "issued before tax"), *((t.value, t.value) for t in Treatment)],
        allow_blank=True,
        help_text="domestic: the seller's country's VAT; reverse_charge: another EU country "
        "with a VAT id VIES confirmed, 0 % (Article 196); oss: the buyer's country's VAT; "
        "outside_eu: no EU VAT; us_sales_tax: a state the seller is registered in; "
        'us_not_registered: no sales tax; shopify_channel: Shopify invoices the tax; "": '
        "issued before tax.",
    )
    tax_mentions = serializers.ListField(
        child=serializers.CharField(),
        help_text="The legal mentions the invoice prints (reverse charge, outside the EU, OSS, "
        "a VAT id VIES had not confirmed).",
    )
    vat_id_unconfirmed = serializers.BooleanField(
        help_text="VAT was charged because VIES had not confirmed the buyer's VAT id at issue; "
        "a credit note follows once it does."
    )
    vat_in_eur = VatInEurOut(
        allow_null=True,
        help_text="The VAT also stated in euros (Article 230 of Directive 2006/112/EC): on a "
        "document that charges VAT, from a euro-area seller, in another currency than the "
        "euro; converted at the ECB rate frozen at issue (a credit note: its invoice's). "
        "Null otherwise.",
    )
    total = MoneyOut(
        help_text="What is owed as issued: subtotal plus tax_total, less the account credit "
        "its lines used (after tax)."
    )
    credited = MoneyOut(help_text="Credit notes issued against this invoice.")
    amount_paid = MoneyOut(help_text="Paid: charged through Stripe, or paid out of band.")
    amount_due = MoneyOut(
        help_text="What is left to pay: total less credited and paid; 0 once paid or void."
    )
    refunded = MoneyOut(
        help_text="Of its credit notes, what went (or is going) back to the card; a refund "
        "that failed is not in it (its amount became account credit). 0 on a credit note: "
        "its `refunds` say where its money went."
    )
    note = serializers.CharField(allow_blank=True)
    credited_invoice = serializers.CharField(allow_null=True)
    held = HeldOut(allow_null=True, help_text="P8: not charged, over the spending cap.")
    shopify_usage_records = UsageRecordOut(
        many=True,
        help_text="Shopify channel: the usage records that bill the invoice's usage lines "
        "through Shopify (a line over the cap is split: a part posted, a part held). Empty "
        "on the card channel.",
    )


class LineOut(serializers.Serializer):
    description = serializers.CharField()
    kind = serializers.CharField()
    meter = serializers.CharField(allow_null=True)
    quantity = serializers.IntegerField()
    unit_price = MoneyOut()
    amount = MoneyOut()
    rules = serializers.ListField(child=serializers.CharField(), help_text="e.g. ['P6']")
    period = PeriodOut()


StatusChangeOut = inline_serializer(
    "StatusChange",
    {  # "from" is a Python keyword: no class body can declare it
        "from": serializers.CharField(),
        "to": serializers.CharField(),
        "at": serializers.DateTimeField(),
        "reason": serializers.CharField(allow_blank=True),
    },
)


class AttemptOut(serializers.Serializer):
    number = serializers.IntegerField()
    trigger = serializers.CharField()
    status = serializers.ChoiceField(choices=AttemptStatus.choices)
    amount = MoneyOut()
    failure_code = serializers.CharField(allow_null=True)
    failure_reason = serializers.CharField(allow_null=True, help_text="In words (F3).")
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class RefundOut(serializers.Serializer):
    id = serializers.IntegerField()
    credit_note = serializers.CharField(help_text="The number of the credit note it is part of.")
    amount = MoneyOut(help_text="Tax included.")
    status = serializers.ChoiceField(
        choices=RefundStatus.choices,
        help_text="created, sending: being sent to Stripe; unknown: Stripe's answer was lost "
        "(settled by asking Stripe, never by refunding again); pending: Stripe took it, the "
        "card's bank has not confirmed it; succeeded; failed or canceled: nothing went back, "
        "its amount is the account's credit.",
    )
    failure_reason = serializers.CharField(allow_null=True, help_text="In words, once failed.")
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class InvoiceOut(InvoiceSummaryOut):
    lines = LineOut(many=True)
    status_history = serializers.ListField(child=StatusChangeOut)
    payment_attempts = AttemptOut(many=True)
    confirmation_url = serializers.URLField(allow_null=True, help_text="F2: the secure page.")
    refunds = RefundOut(
        many=True,
        help_text="Money going back to the card: a credit note's refunds, or an invoice's "
        "through its credit notes, oldest first, each with its status.",
    )


class ChangeOut(serializers.Serializer):
    id = serializers.IntegerField(required=False, help_text="The first scheduled change.")
    effective = serializers.ChoiceField(choices=["now", "period_end"])
    effective_at = serializers.DateTimeField()
    scheduled_changes = ScheduledChangeOut(many=True)
    invoice = InvoiceOut(allow_null=True, help_text="P6: the prorated upgrade invoice.")


class ShopifyApprovalDetailOut(serializers.Serializer):
    confirmation_url = serializers.URLField(
        help_text="Shopify's approval page: the merchant approves (or declines) there."
    )
    status = serializers.CharField(help_text="Shopify's status of the app subscription: PENDING.")
    replacement_behavior = serializers.CharField(
        allow_blank=True,
        help_text="APPLY_IMMEDIATELY (an upgrade, P6) or APPLY_ON_NEXT_BILLING_CYCLE (P7).",
    )


class ShopifyApprovalOut(serializers.Serializer):
    """202 for an account that pays through Shopify: nothing changed yet."""

    shopify = ShopifyApprovalDetailOut()


def _shopify_accepted(approval: actions.ShopifyApproval) -> Response:
    """A change or start through Shopify: accepted, waiting for the merchant's approval."""
    row = approval.shopify_subscription
    body = {
        "shopify": {
            "confirmation_url": row.confirmation_url,
            "status": row.status,
            "replacement_behavior": row.replacement_behavior,
        }
    }
    return Response(body, status=status.HTTP_202_ACCEPTED)


class PaymentMethodOut(serializers.Serializer):
    stripe_payment_method = serializers.CharField()
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField()
    exp_year = serializers.IntegerField()
    default = serializers.BooleanField()


class AccountInvoicesApi(APIView):
    @extend_schema(
        operation_id="invoices_list", responses=paginated(InvoiceSummaryOut(), "InvoicePage")
    )
    def get(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(
            selectors.invoice_list(account=account), request, view=self
        )
        assert page is not None  # None only for a paginator without a page size
        for invoice in page:
            invoice.account = account
        figures = statement.account_statement(account=account).by_id
        records = _usage_records([i.pk for i in page])
        return paginator.get_paginated_response(
            [
                invoice_out(
                    i, detail=False, figures=figures.get(i.pk), records=records.get(i.pk, [])
                )
                for i in page
            ]
        )


class InvoiceApi(APIView):
    @extend_schema(operation_id="invoices_retrieve", responses=InvoiceOut)
    def get(self, request, invoice_id: int):
        return Response(
            invoice_out(selectors.invoice_get(principal=request.user, invoice_id=invoice_id))
        )


class AddOnChangeIn(serializers.Serializer):
    addon = serializers.CharField(max_length=40)
    tier = serializers.CharField(max_length=40, allow_null=True)


class ChangeIn(serializers.Serializer):
    plan = serializers.CharField(max_length=40, required=False)
    interval = serializers.ChoiceField(choices=plans_api.INTERVALS_IN, required=False)
    addons = AddOnChangeIn(many=True, required=False, default=list)

    def validate(self, data):
        if not (data.get("plan") or data.get("interval") or data.get("addons")):
            raise serializers.ValidationError("Name a plan, an interval or add-ons to change.")
        return data


class ChangeCodes(catalog_schema.CatalogCodes):
    """A change names a plan for sale, and at least one of plan, interval, add-ons (as
    `ChangeIn.validate` requires)."""

    target_class = ChangeIn

    def map_serializer(self, auto_schema, direction):
        schema = super().map_serializer(auto_schema, direction)
        schema["anyOf"] = [
            {"required": ["plan"]},
            {"required": ["interval"]},
            {"required": ["addons"], "properties": {"addons": {"minItems": 1}}},
        ]
        return schema


class AddOnChanges(catalog_schema.AddOnChoices):
    target_class = AddOnChangeIn
    removable = True  # a null tier removes the add-on


class SubscriptionChangesApi(APIView):
    """POST a change: upgrades apply now with a prorated invoice (P6), downgrades at the end of
    the cycle (P7)."""

    @extend_schema(
        operation_id="subscription_changes_create",
        request=ChangeIn,
        responses={201: ChangeOut, 202: ShopifyApprovalOut},
        examples=[
            OpenApiExample(
                "P6: Basic → Pro mid-cycle (billed now, prorated)",
                request_only=True,
                value={"plan": "pro"},
            ),
            OpenApiExample(
                "P7: remove Voice (at the cycle's end)",
                request_only=True,
                value={"addons": [{"addon": "voice", "tier": None}]},
            ),
        ],
    )
    @idempotent
    def post(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        serializer = ChangeIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The upgrade is paid at once (P6), by a task after the commit; a partner may bill an
        # account without a card (by transfer): its invoice stays open.
        changed = actions.subscription_change(
            account=account,
            request=changes.ChangeRequest(
                plan=data.get("plan"),
                interval=data.get("interval"),
                addons=tuple((a["addon"], a["tier"]) for a in data["addons"]),
            ),
            collect="soon",
            card_required=False,
        )
        if changed.shopify is not None:
            return _shopify_accepted(changed.shopify)
        result = changed.result
        assert result is not None  # the card channel changes at once
        body = {
            "effective": result.effective,
            "effective_at": result.effective_at,
            "scheduled_changes": [
                {"id": c.pk, "change": str(c), "effective_at": c.effective_at}
                for c in result.scheduled
            ],
            # The latest request wins: scheduled changes of the same items it replaced.
            "superseded_changes": [{"id": c.pk, "change": str(c)} for c in result.superseded],
            "invoice": invoice_out(result.invoice) if result.invoice else None,
        }
        if result.scheduled:
            body["id"] = result.scheduled[0].pk
        return Response(body, status=status.HTTP_201_CREATED)


class SubscriptionStartIn(serializers.Serializer):
    plan = serializers.CharField(max_length=40)
    interval = serializers.ChoiceField(choices=plans_api.INTERVALS_IN)


class SubscriptionStartCodes(catalog_schema.CatalogCodes):
    target_class = SubscriptionStartIn


class SubscriptionStartOut(serializers.Serializer):
    subscription = SubscriptionOut()
    invoice = InvoiceOut(allow_null=True, help_text="P1: the first cycle's fees, charged now.")


class SubscriptionStartApi(APIView):
    """POST a new subscription for an account whose last one ended: a public plan, a cycle
    from now, its first invoice charged at once; the features switched off at the end are
    switched back on. 409 while a subscription is live or an invoice is past due."""

    @extend_schema(
        operation_id="subscription_start",
        request=SubscriptionStartIn,
        responses={201: SubscriptionStartOut, 202: ShopifyApprovalOut},
        examples=[
            OpenApiExample(
                "Start again on Pro, monthly",
                request_only=True,
                value={"plan": "pro", "interval": "month"},
            )
        ],
    )
    @idempotent
    def post(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        serializer = SubscriptionStartIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = actions.subscription_start_again(
            account=account,
            plan_code=serializer.validated_data["plan"],
            interval=serializer.validated_data["interval"],
            collect="soon",  # the first cycle is paid at once (P1), by a task after the commit
            card_required=False,
        )
        if outcome.shopify is not None:
            return _shopify_accepted(outcome.shopify)
        started = outcome.started
        assert started is not None  # the card channel starts at once
        body = {
            "subscription": subscription_out(started.subscription),
            "invoice": invoice_out(started.invoice) if started.invoice else None,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class SubscriptionChangeApi(APIView):
    @extend_schema(operation_id="subscription_changes_cancel", responses={204: None})
    def delete(self, request, slug: str, change_id: int):
        account = account_get(principal=request.user, slug=slug)
        actions.scheduled_change_cancel(account=account, change_id=change_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvoicePdfApi(APIView):
    @extend_schema(
        operation_id="invoices_pdf", responses={(200, "application/pdf"): OpenApiTypes.BINARY}
    )
    def get(self, request, invoice_id: int):
        invoice = selectors.invoice_get(principal=request.user, invoice_id=invoice_id)
        content = render_invoice_pdf(selectors.invoice_document(invoice=invoice))
        response = HttpResponse(content, content_type="application/pdf")
        name = invoice.number or f"draft-{invoice.pk}"
        response["Content-Disposition"] = f'inline; filename="invoice-{name}.pdf"'
        return response


class PaymentMethodIn(serializers.Serializer):
    stripe_payment_method = serializers.RegexField(r"^pm_[A-Za-z0-9_]+$", max_length=64)


class PaymentMethodApi(APIView):
    """PUT a card the partner collected with Stripe's own card form; it becomes the default.
    The partner asserts that its merchant accepted the Terms of Service in force with it: the
    acceptance is recorded under the partner's key (docs/api.md)."""

    @extend_schema(
        operation_id="payment_method_set", request=PaymentMethodIn, responses=PaymentMethodOut
    )
    def put(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        serializer = PaymentMethodIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        ip_address, user_agent = logins.request_origin(request)
        method = actions.payment_method_save(
            account=account,
            stripe_payment_method=serializer.validated_data["stripe_payment_method"],
            accepted_by=Acceptor(
                source=TermsSource.PARTNER_API,
                key=request.auth,
                ip_address=ip_address,
                user_agent=user_agent,
            ),
        ).method
        return Response(
            {
                "stripe_payment_method": method.stripe_id,
                "brand": method.brand,
                "last4": method.last4,
                "exp_month": method.exp_month,
                "exp_year": method.exp_year,
                "default": method.is_default,
            }
        )


class InvoiceConfirmationLinkApi(APIView):
    """POST: email the link of the payment waiting for the customer again (F2)."""

    @extend_schema(
        operation_id="invoices_confirmation_link_resend",
        request=None,
        responses=InvoiceOut,
        description="The same link, for the same payment: no new payment is made. At most "
        "once every 10 minutes (429 `too_soon` with `details.retry_after_seconds`); 409 "
        "`nothing_to_confirm` when no payment of the invoice waits for the customer.",
    )
    @idempotent
    def post(self, request, invoice_id: int):
        invoice = selectors.invoice_get(principal=request.user, invoice_id=invoice_id)
        actions.confirmation_link_resend(invoice=invoice)
        return Response(
            invoice_out(selectors.invoice_get(principal=request.user, invoice_id=invoice_id))
        )


class InvoiceRetryApi(APIView):
    """POST: charge the invoice again now (F3)."""

    @extend_schema(
        operation_id="invoices_retry",
        request=None,
        responses=InvoiceOut,
        description="Charge now through the one collection path. 409 `awaiting_confirmation` "
        "(with `details.confirmation_url`) while a payment waits for the customer's bank: "
        "none is made beside it; 409 `no_payment_method` when the account has no card; 409 "
        "`payment_in_progress` while a charge waits for Stripe.",
    )
    @idempotent
    def post(self, request, invoice_id: int):
        invoice = selectors.invoice_get(principal=request.user, invoice_id=invoice_id)
        payment = actions.invoice_pay(account=invoice.account, invoice=invoice)
        if payment.outcome == "not_charged":
            raise Conflict(payment.message, code="nothing_to_charge")
        return Response(
            invoice_out(selectors.invoice_get(principal=request.user, invoice_id=invoice_id))
        )


# --- credit notes and refunds ---------------------------------------------------------------

# The largest amount a credit note takes at the edge; the invoice's own room is the real limit.
CREDIT_MAX_MINOR = 10**12


class CreditNoteIn(serializers.Serializer):
    amount = WholeNumberField(
        min_value=1,
        max_value=CREDIT_MAX_MINOR,
        help_text="What is credited, before tax, in minor units; the note gives the invoice's "
        "tax back in proportion. At most what is left to credit on the invoice.",
    )
    refund = WholeNumberField(
        min_value=0,
        max_value=CREDIT_MAX_MINOR,
        default=0,
        help_text="Tax included, minor units: the part of the note going back to the card of "
        "a paid invoice (at most the note's total; the rest is account credit). Needs a key "
        "with the `refunds:write` scope.",
    )
    reason = TextField(
        max_length=300,
        help_text="Why, in plain words: kept in the audit log, and printed on the credit note "
        "unless `description` is given.",
    )
    description = TextField(
        max_length=300,
        required=False,
        allow_blank=True,
        help_text="What the customer reads on the credit note, when it differs from `reason`.",
    )


class CreditNoteOut(serializers.Serializer):
    credit_note = InvoiceOut(help_text="The credit note, with its `refunds` and their status.")
    invoice = InvoiceOut(help_text="The credited invoice, after the note.")
    account_credit = MoneyOut(
        help_text="What of the note became the account's credit, taken off its next invoices "
        "(a paid invoice's credit not refunded, and any refund that failed)."
    )


class InvoiceCreditNotesApi(APIView):
    """POST: credit a final invoice with a numbered credit note; on a paid invoice part or all
    of it may go back to the card (a refund)."""

    # A key holding only `refunds:write` may credit here too (a support tool's key); one with
    # `write` but not `refunds:write` may credit, never refund.
    also_write_scopes = (ApiKeyScope.REFUNDS_WRITE,)

    @extend_schema(
        operation_id="invoices_credit_notes_create",
        request=CreditNoteIn,
        responses={201: CreditNoteOut},
        description="On an unpaid invoice the note is netted at once (the next charge asks "
        "for what is left). On a paid one, `refund` goes back to the card that paid it "
        "(latest charge first) and the rest becomes account credit; the refund is sent to "
        "Stripe once the note is committed, and its status follows Stripe's answers "
        "(webhooks `invoice.refunded`, `invoice.refund_failed`). 403 `insufficient_scope` "
        "for a refund without the `refunds:write` scope; 409 `not_refundable` when the "
        "invoice is not paid; 409 `credit_too_large` past what is left to credit and 409 "
        "`refund_too_large` past the note's total or what the card can get back "
        "(`details.most`, and the limit in words); 409 `charge_disputed` while the card's "
        "bank disputes the charge (`details.dispute`: id, reason, status); 409 "
        "`payment_in_progress`; 409 `stripe_unavailable` when Stripe cannot say what is "
        "refundable.",
        examples=[
            OpenApiExample(
                "Refund $20.00 of a $30.00 credit",
                request_only=True,
                value={"amount": 3000, "refund": 2000, "reason": "Outage on 3 November"},
            )
        ],
    )
    @idempotent
    def post(self, request, invoice_id: int):
        invoice = selectors.invoice_get(principal=request.user, invoice_id=invoice_id)
        serializer = CreditNoteIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["refund"] and not request.user.key.allows(ApiKeyScope.REFUNDS_WRITE):
            # A refund moves money out of the balance: the scope is asked for, never implied.
            raise Forbidden(
                "Refunding to the card needs an API key with the 'refunds:write' scope; this "
                "key may credit the invoice without a refund (refund 0).",
                code="insufficient_scope",
            )
        note = actions.invoice_credit(
            invoice=invoice,
            amount_minor=data["amount"],
            refund_minor=data["refund"],
            reason=data["reason"],
            description=data.get("description", ""),
        )
        body = {
            "credit_note": invoice_out(
                selectors.invoice_get(principal=request.user, invoice_id=note.pk)
            ),
            "invoice": invoice_out(
                selectors.invoice_get(principal=request.user, invoice_id=invoice_id)
            ),
            "account_credit": money(selectors.note_account_credit_minor(note=note), note.currency),
        }
        return Response(body, status=status.HTTP_201_CREATED)


# --- the account with its statement ---------------------------------------------------------


class ShopifyShopOut(plans_api.ShopifyShopOut):
    """The shop, and what Shopify says of its app subscription (billing.shopify_figures: the
    figures the merchant's page and the console show)."""

    status = serializers.ChoiceField(
        choices=ShopifyStatus.values,
        allow_null=True,
        help_text="Shopify's status of the app subscription shown (the live one, else the "
        "newest): PENDING waits for the merchant's approval, only ACTIVE bills, FROZEN is an "
        "unpaid Shopify bill. Null before any was asked for.",
    )
    capped_amount = MoneyOut(
        allow_null=True, help_text="The approved usage cap per 30-day Shopify interval."
    )
    balance_used = MoneyOut(
        allow_null=True,
        help_text="Usage charges posted to Shopify in its current interval (Shopify's figure).",
    )
    held_amount = MoneyOut(
        help_text="P8: usage held over the cap (or refused for want of a live subscription); "
        "posted once the merchant approves a higher cap."
    )
    currency = serializers.CharField(help_text="The shop's billing currency: the account's.")
    confirmation_url = serializers.URLField(
        allow_null=True,
        help_text="While an app subscription waits for the merchant's approval: Shopify's "
        "approval page. Null otherwise.",
    )
    cap_confirmation_url = serializers.URLField(
        allow_null=True,
        help_text="While a higher cap waits for the merchant's approval: Shopify's page.",
    )
    current_period_end = serializers.DateTimeField(
        allow_null=True,
        help_text="The end of Shopify's current 30-day interval (exclusive), our period's end.",
    )


class AccountOut(plans_api.AccountOut):
    shopify = ShopifyShopOut(allow_null=True, help_text="Null on the card channel.")
    credit_balance = MoneyOut(
        help_text="Account credit not used yet: taken off the next invoices automatically."
    )
    amount_owed = MoneyOut(
        help_text="The amount due of every open, past-due or awaiting-confirmation invoice."
    )
    # The buyer's tax identity (docs/tax.md): the address invoices print, and VIES's answer.
    address_line1 = serializers.CharField(allow_blank=True)
    address_line2 = serializers.CharField(allow_blank=True)
    postal_code = serializers.CharField(allow_blank=True)
    city = serializers.CharField(allow_blank=True)
    us_state = serializers.CharField(
        allow_blank=True, help_text='The US state (two letters) of a US buyer; "" otherwise.'
    )
    tax_id_status = serializers.ChoiceField(
        choices=TaxIdStatus.choices,
        help_text="What VIES said of `vat_id`: `pending` while it is asked (after a change), "
        "`valid` or `invalid` (its answer), `unavailable` (VIES could not answer and there was "
        "no earlier answer: VAT is charged until it confirms), `unchecked` (no EU VAT id).",
    )
    tax_id_checked_at = serializers.DateTimeField(
        allow_null=True, help_text="When VIES gave the answer in `tax_id_status`."
    )
    tax_id_consultation = serializers.CharField(
        allow_blank=True, help_text="VIES's consultation number for that answer (the proof)."
    )


class AccountCreateIn(plans_api.AccountCreateIn):
    us_state = UsStateField(required=False, default="")


class AccountCreateCodes(catalog_schema.AccountCreateCodes):
    """plans' drawn schema of a new account (codes for sale, channels), for this subclass."""

    target_class = "billing.api.AccountCreateIn"


class _UsStateIn(serializers.Serializer):
    """The field this layer adds to plans' AccountCreateIn (which has read the rest)."""

    us_state = UsStateField(required=False, default="")


class AccountDetailsIn(serializers.Serializer):
    """The billing details a partner may change; a field left out is left as it is."""

    billing_email = serializers.EmailField(required=False, max_length=254)
    company = TextField(
        max_length=200, required=False, allow_blank=True, help_text="The legal name."
    )
    address_line1 = TextField(max_length=200, required=False, allow_blank=True)
    address_line2 = TextField(max_length=200, required=False, allow_blank=True)
    postal_code = TextField(
        max_length=20,
        required=False,
        allow_blank=True,
        help_text="For a US buyer, the ZIP code: 5 digits or ZIP+4 (98101-1234).",
    )
    city = TextField(max_length=100, required=False, allow_blank=True)
    country = CountryField(required=False)
    us_state = UsStateField(required=False)
    vat_id = TextField(
        max_length=20,
        required=False,
        allow_blank=True,
        help_text="With its country prefix. An EU id is checked offline at once, then with VIES "
        "(`tax_id_status` is `pending` meanwhile).",
    )

    def validate_vat_id(self, value: str) -> str:
        return vat_id_compact(value)


def _tax_identity_at_creation(body, data: dict) -> dict:
    """The US state and the VAT id of a new account, checked together with its country (the
    plans layer's serializer has taken the rest)."""
    extra = _UsStateIn(data=body)
    extra.is_valid(raise_exception=True)
    us_state = extra.validated_data["us_state"]
    vat_id = vat_id_compact(data.get("vat_id", ""))
    country = data.get("country", "")
    problems = tax_identity_problems(
        country=country, us_state=us_state, postal_code=""
    ) | vat_id_problems(vat_id=vat_id, country=country)
    if problems:
        raise serializers.ValidationError({field: [words] for field, words in problems.items()})
    return {"us_state": us_state, "vat_id": vat_id}


class _WithStatement(plans_api.AccountsOutMixin):
    def accounts_out(self, accounts: list) -> list[dict]:
        """plans' account body, plus the statement of account (six queries for a page) and the
        buyer's tax identity."""
        statements = statement.account_statements(accounts=accounts)
        now = timezone.now()
        out = []
        for account, body in zip(accounts, super().accounts_out(accounts), strict=True):
            figures = statements[account.pk]
            if body.get("shopify") is not None:
                body["shopify"] = shopify_figures.api_figures(account=account, now=now)
            body["credit_balance"] = money(figures.credit_balance_minor, account.currency)
            body["amount_owed"] = money(figures.amount_owed_minor, account.currency)
            body |= {
                "address_line1": account.address_line1,
                "address_line2": account.address_line2,
                "postal_code": account.postal_code,
                "city": account.city,
                "us_state": account.us_state,
                "tax_id_status": account.tax_id_status,
                "tax_id_checked_at": account.tax_id_checked_at,
                "tax_id_consultation": account.tax_id_consultation,
            }
            out.append(body)
        return out


@extend_schema_view(
    get=extend_schema(
        operation_id="accounts_list", responses=paginated(AccountOut(), "AccountPage")
    ),
    post=extend_schema(
        operation_id="accounts_create",
        request=AccountCreateIn,
        responses={201: AccountOut},
        examples=[plans_api.ACCOUNT_EXAMPLE],
    ),
)
class AccountsApi(_WithStatement, plans_api.AccountsApi):
    """GET: the accounts this key reaches, newest first. POST: a new account and subscription."""

    def account_open(self, *, partner, data: dict):
        """On the Shopify channel, the account and its shop are created with the app
        subscription's request at Shopify, all or nothing: a shop whose token Shopify refuses
        leaves no account behind. An EU VAT id is checked with VIES once the account exists."""
        data |= _tax_identity_at_creation(self.request.data, data)
        if data.get("billing_channel") != BillingChannel.SHOPIFY:
            account = super().account_open(partner=partner, data=data)
        else:
            plan_code = data["plan"].code
            addons = {tier.addon.code: tier.code for tier in data["addons"]}
            with transaction.atomic():
                account = super().account_open(partner=partner, data=data)
                shopify_billing.shopify_subscribe(
                    account=account, plan_code=plan_code, addons=addons
                )
        tax_identity.vat_id_check_queue(account=account)
        return account


@extend_schema_view(
    get=extend_schema(operation_id="accounts_retrieve", responses=AccountOut),
    patch=extend_schema(
        operation_id="accounts_details_update",
        request=AccountDetailsIn,
        responses=AccountOut,
        examples=[
            OpenApiExample(
                "A VAT id for a German buyer",
                request_only=True,
                value={
                    "company": "Beispiel Support GmbH",
                    "country": "DE",
                    "vat_id": "DE123456788",
                },
            )
        ],
    ),
)
class AccountDetailApi(_WithStatement, plans_api.AccountDetailApi):
    """GET: the account. PATCH: its billing details (legal name, address, country, US state,
    VAT id); a changed VAT id is checked with VIES (`tax_id_status: pending` meanwhile)."""

    def patch(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        serializer = AccountDetailsIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = tax_identity.account_billing_details_save(
            account=account, **serializer.validated_data
        )
        return Response(self.accounts_out([account])[0])


# metering's usage answer, with the late units (F6) that only the invoiced closes tell. (No
# docstring: it would become the schema's description of the operation.)
class UsageApi(metering_api.UsageApi):
    def late_units(self, *, subscription, start) -> dict[str, int]:
        return selectors.late_units_shown(subscription=subscription, start=start)
