"""Partner API: the helpdesk's event stream, usage, a ticket's billing, entitlements."""

import re
from datetime import datetime

from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_fields import money
from accounts.api_schema import AutoSchema, ErrorDetail, MoneyOut, PeriodOut
from accounts.errors import DomainError, NotFound
from accounts.idempotency import idempotent
from accounts.parsers import JSONParser
from accounts.principals import KeyPrincipal, accounts_for
from accounts.selectors import account_get
from plans.selectors import subscription_current

from . import event_schema, metrics, selectors, services, validation

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


class EventBatchParser(JSONParser):
    """An event nested too deeply for the parser costs only itself (`validation.parse_batch`)."""

    def loads(self, text: str):
        return validation.parse_batch(text)


class EventField(serializers.DictField):
    """One event of a batch; each is checked alone by `validation.validate_event`."""


class EventFieldSchema(OpenApiSerializerFieldExtension):
    """The event as `event_schema` draws it from the validation's own tables."""

    target_class = EventField

    def map_serializer_field(self, auto_schema, direction):
        for name, schema in event_schema.components().items():
            component = ResolvedComponent(
                name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
            )
            auto_schema.registry.register_on_missing(component)
        return event_schema.ref(event_schema.EVENT)


RejectedOut = inline_serializer(
    "RejectedEvent",
    {
        "index": serializers.IntegerField(help_text="Position in the batch, from 0."),
        "error": ErrorDetail(),
    },
)
EventBatchOut = inline_serializer(
    "EventBatchResult",
    {
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "rejected": serializers.ListField(child=RejectedOut),
    },
)
EVENT_EXAMPLE = OpenApiExample(
    "H1: a customer's email opens a billable ticket",
    request_only=True,
    value={
        "events": [
            {
                "id": "evt-1001",
                "account": "bloom",
                "type": "message",
                "occurred_at": "2026-11-16T09:30:00Z",
                "ticket": "T-42",
                "channel": "email",
                "author": "customer",
            }
        ]
    },
)


# Why a ticket's meter is `counted: false` (docs/api.md, "A ticket's billing").
TICKET_NOT_COUNTED = {
    "not_billable": "the rules bill no unit of it (`not_counted` names the rule)",
    "capped": "counted by the rules, but over a hard cap (C2) or a paused AI limit (Z9)",
    "excluded": "the merchant contested it and the dispute was accepted: never billed",
    "held": "held for review by the spike guard (a suspected loop or a usage spike): billed only "
    "once released",
    "before_subscription": "billable before the account's first subscription began",
    "no_subscription": "billable while the account had no subscription",
}
TICKET_NOT_COUNTED_CODES = list(TICKET_NOT_COUNTED)  # the schema's TicketNotCountedEnum


class UnitOut(serializers.Serializer):
    unit = serializers.CharField()
    status = serializers.CharField()
    billable_at = serializers.DateTimeField(allow_null=True)
    period_start = serializers.DateTimeField(allow_null=True)
    pending_until = serializers.DateTimeField(allow_null=True)
    rules = serializers.ListField(child=serializers.CharField(), help_text="e.g. ['H1', 'H2']")


class TicketReasonOut(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=TICKET_NOT_COUNTED_CODES,
        help_text="; ".join(f"`{code}`: {words}" for code, words in TICKET_NOT_COUNTED.items()),
    )
    message = serializers.CharField(help_text="The reason in words, with the dates it turns on.")


class TicketMeterOut(serializers.Serializer):
    counted = serializers.BooleanField(
        help_text="Whether an invoice bills (or will bill) a unit of this ticket on this meter."
    )
    reason = TicketReasonOut(allow_null=True, help_text="Why not, when `counted` is false.")
    units = UnitOut(many=True)
    not_counted = serializers.ListField(
        child=inline_serializer(
            "NotCounted", {"rules": serializers.ListField(child=serializers.CharField())}
        ),
        help_text="Why not, e.g. [{'rules': ['H5']}].",
    )


class TicketBillingOut(serializers.Serializer):
    ticket = serializers.CharField()
    meters = serializers.DictField(child=TicketMeterOut())


_STATE = inline_serializer(
    "EntitlementDetail",
    {
        "state": serializers.ChoiceField(choices=["active", "paused", "suspended"]),
        "until": serializers.DateTimeField(allow_null=True),
        "reason": serializers.CharField(allow_blank=True),
    },
)


class EntitlementsOut(serializers.Serializer):
    convert_campaigns = serializers.ChoiceField(choices=["active", "paused"], help_text="C2")
    ai_agents = serializers.ChoiceField(choices=["active", "paused"], help_text="Z9")
    helpdesk = serializers.ChoiceField(choices=["active", "suspended"], help_text="F4")
    details = serializers.DictField(child=_STATE)


class EventsApi(APIView):
    """POST a batch of up to 1,000 usage events (api.md, "Usage events")."""

    parser_classes = [EventBatchParser]
    ingest = True  # an `events:write` key may post here, with the ingest rate limit

    @extend_schema(
        operation_id="events_ingest",
        request=inline_serializer(
            "EventBatch",
            {
                "events": serializers.ListField(
                    child=EventField(), min_length=1, max_length=services.MAX_BATCH
                )
            },
        ),
        responses={202: EventBatchOut},
        examples=[EVENT_EXAMPLE],
    )
    @idempotent
    def post(self, request):
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise DomainError('Send {"events": [ ... ]}.', code="invalid_batch")
        events = body["events"]
        if not events:
            raise DomainError("The batch holds no event.", code="empty_batch")
        if len(events) > services.MAX_BATCH:
            raise DomainError(
                f"A batch holds at most {services.MAX_BATCH} events; this one has {len(events)}.",
                code="batch_too_large",
                details={"max": services.MAX_BATCH, "received": len(events)},
            )
        principal = request.user
        fixed = principal.key.account if isinstance(principal, KeyPrincipal) else None
        result = services.events_ingest(
            raw_events=events, accounts=accounts_for(principal), fixed_account=fixed
        )
        metrics.events_observe(
            accepted=result.accepted, duplicates=result.duplicates, rejected=len(result.rejected)
        )
        body = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
        }
        if result.rejected and not (result.accepted or result.duplicates):
            # Nothing in the batch could be kept: say so with a 4xx, still listing each reason.
            unknown = all(r["error"]["code"] == "not_found" for r in result.rejected)
            code, http = ("not_found", 404) if unknown else ("all_events_rejected", 400)
            message = "No event of the batch was accepted; see details.rejected."
            return Response(
                {
                    "error": {
                        "code": code,
                        "message": message,
                        "details": {"rejected": result.rejected},
                    },
                    **body,
                },
                status=http,
            )
        return Response(body, status=status.HTTP_202_ACCEPTED)


def _account_and_subscription(request, slug):
    account = account_get(principal=request.user, slug=slug)
    subscription = subscription_current(account=account)
    return account, subscription


_ForecastOut = inline_serializer(
    "UsageForecast",
    {
        "units": serializers.IntegerField(help_text="Projected units at the period's end."),
        "overage_amount": MoneyOut(),
        "method": serializers.ChoiceField(
            choices=["pace", "last_period", "so_far", "capped", "paused", "final"],
            help_text=(
                "pace: this period's pace so far (only from `pace_from` on); last_period: too "
                "early for a pace, the last period's count; so_far: too early and no more last "
                "period, what is counted now; capped: a projection cut at `ceiling`; paused: the "
                "feature is paused, nothing more counts; final: the period is over."
            ),
        ),
        "note": serializers.CharField(help_text="How the forecast was made, in words."),
        "pace_from": serializers.DateTimeField(
            help_text="Before this instant (3 days into the period) no pace is projected."
        ),
        "ceiling": serializers.IntegerField(
            allow_null=True,
            help_text="The most units the period can count: a hard cap (C2) or an AI limit "
            "(Z9); null when nothing caps it. The forecast never exceeds it.",
        ),
    },
)
_MeterUsageOut = inline_serializer(
    "MeterUsage",
    {
        "used": serializers.IntegerField(help_text="Final units billed in the period."),
        "pending": serializers.IntegerField(help_text="Units whose window is still open."),
        "not_billed": serializers.IntegerField(help_text="Recorded over a cap or a pause."),
        "late": serializers.IntegerField(
            help_text="Units of closed, already-invoiced periods counted since their invoice "
            "and not invoiced yet: the open period's invoice bills them as late usage (F6). "
            "Always 0 for a period that is not the open one."
        ),
        "held": serializers.IntegerField(
            help_text="Units held for review by the spike guard (a suspected loop or a usage "
            "spike, see `held-usage`): not billed and not in `used` or the forecast until "
            "released (then billed: in this period while it is open, else as late usage on the "
            "next invoice) or excluded."
        ),
        "excluded": serializers.IntegerField(
            help_text="Units of tickets the merchant contested with the dispute accepted (or "
            "held units excluded after review): kept, never billed, not in `used`."
        ),
        "included": serializers.IntegerField(allow_null=True),
        "overage_units": serializers.IntegerField(),
        "overage_amount": MoneyOut(),
        "forecast": _ForecastOut,
    },
)
UsageOut = inline_serializer(
    "Usage",
    {
        "account": serializers.CharField(),
        "period": PeriodOut(),
        "meters": serializers.DictField(child=_MeterUsageOut, help_text="Keyed by meter."),
    },
)


class UsageSchema(AutoSchema):
    def get_override_parameters(self):
        # Drawn when the schema is, not at import: the last year accepted moves on 1 January.
        last = timezone.now().year + 1
        years = "|".join(str(year) for year in range(validation.EARLIEST.year, last + 1))
        period = {"type": "string", "pattern": f"^({years})-(0[1-9]|1[0-2])$"}
        description = (
            f"YYYY-MM, from {validation.EARLIEST:%Y-%m} to {last}-12: the usage period "
            "starting that month."
        )
        return [OpenApiParameter("period", period, description=description)]


# The usage answer, less what only billing knows: the API serves billing.api.UsageApi, which adds
# the late units (F6) from the invoiced closes. (No docstring: it would become the schema's
# description of the operation.)
class UsageApi(APIView):
    schema = UsageSchema()

    def late_units(self, *, subscription, start: datetime) -> dict[str, int]:
        return {}  # which late units were invoiced is billing's to say, a layer above

    @extend_schema(operation_id="usage_retrieve", responses=UsageOut)
    def get(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        now = timezone.now()
        month = _month_param(request.query_params.get("period"), now=now)
        try:
            # The subscription whose period it is: after an end, its past periods still answer.
            found = selectors.usage_period_of_account(account=account, month=month, now=now)
        except (ValueError, OverflowError):  # a cycle anchored so that the month overflows
            raise _period_error(now) from None
        if found is None:
            raise NotFound(f"Account '{slug}' has no subscription.")
        subscription, start, end = found
        usage = selectors.usage_summary(
            account=account,
            subscription=subscription,
            start=start,
            end=end,
            now=now,
            late=self.late_units(subscription=subscription, start=start),
        )
        currency = usage.currency
        return Response(
            {
                "account": account.slug,
                "period": {"start": usage.start, "end": usage.end},
                "meters": {
                    m.meter: {
                        "used": m.used,
                        "pending": m.pending,
                        "not_billed": m.not_billed,
                        "late": m.late,
                        "held": m.held,
                        "excluded": m.excluded,
                        "included": m.included,
                        "overage_units": m.overage_units,
                        "overage_amount": money(m.overage_amount_minor, currency),
                        "forecast": {
                            "units": m.forecast_units,
                            "overage_amount": money(m.forecast_amount_minor, currency),
                            "method": m.forecast_method,
                            "note": m.forecast_note,
                            "pace_from": m.forecast_pace_from,
                            "ceiling": m.forecast_ceiling,
                        },
                    }
                    for m in usage.meters
                },
            }
        )


def _month_param(value: str | None, *, now: datetime) -> str | None:
    """`period=YYYY-MM`, from the first month events may be stamped in to next year's end."""
    if value is None:
        return None
    match = _MONTH.fullmatch(value)
    if not match or not validation.EARLIEST.year <= int(match[1]) <= now.year + 1:
        raise _period_error(now)
    return value


def _period_error(now: datetime) -> DomainError:
    return DomainError(
        f"period must read YYYY-MM, from {validation.EARLIEST:%Y-%m} to {now.year + 1}-12, "
        "e.g. 2026-11.",
        details={"field": "period"},
    )


class TicketBillingApi(APIView):
    @extend_schema(
        operation_id="ticket_billing_retrieve",
        parameters=[
            OpenApiParameter(
                "ticket",
                event_schema.identifier_string(),
                OpenApiParameter.PATH,
                description="The helpdesk's ticket id, as its events name it.",
            )
        ],
        responses=TicketBillingOut,
    )
    def get(self, request, slug: str, ticket: str):
        account = account_get(principal=request.user, slug=slug)
        _, error = validation.identifier("ticket", ticket)
        if error:  # e.g. %00, which the database cannot even compare
            raise DomainError(error.message, details={"field": "ticket"})
        charges = selectors.ticket_billing(account=account, ticket=ticket)
        if not charges:
            raise NotFound(f"No billing verdict for ticket '{ticket}' yet.")
        spans = selectors.billed_spans(account=account)
        meters: dict[str, dict] = {}
        outside: dict[str, selectors.NeverBilled] = {}  # per meter, its first unbilled unit's
        for charge in charges:
            entry = meters.setdefault(
                charge.meter, {"counted": False, "reason": None, "units": [], "not_counted": []}
            )
            if charge.status == "not_counted":
                entry["not_counted"].append({"rules": charge.rules})
                continue
            if charge.status in ("final", "pending"):
                # Counted by the rules; billed only in a period a subscription bills, as the
                # usage answer counts it (selectors.usage_summary).
                assert charge.period_start is not None and charge.billable_at is not None
                why = selectors.never_billed(
                    period_start=charge.period_start, billable_at=charge.billable_at, spans=spans
                )
                entry["counted"] = entry["counted"] or why is None
                if why is not None:
                    outside.setdefault(charge.meter, why)
            entry["units"].append(
                {
                    "unit": charge.unit,
                    "status": charge.status,
                    "billable_at": charge.billable_at,
                    "period_start": charge.period_start,
                    "pending_until": charge.pending_until,
                    "rules": charge.rules,
                }
            )
        for meter, entry in meters.items():
            if not entry["counted"]:
                entry["reason"] = _not_counted_reason(entry, outside.get(meter))
        return Response({"ticket": ticket, "meters": meters})


def _not_counted_reason(entry: dict, outside: selectors.NeverBilled | None) -> dict:
    if outside is not None:
        return {"code": outside.code, "message": outside.message}
    if any(unit["status"] == "excluded" for unit in entry["units"]):
        return {
            "code": "excluded",
            "message": "Contested by the merchant and accepted: excluded from billing, its "
            "verdict kept (GET …/ticket-disputes?ticket= says how it was decided).",
        }
    if any(unit["status"] == "held" for unit in entry["units"]):
        return {
            "code": "held",
            "message": "Held for review (a suspected loop or a usage spike): not billed unless "
            "released, by the merchant, an operator, or by itself after 14 days.",
        }
    if any(unit["status"] == "capped" for unit in entry["units"]):
        return {
            "code": "capped",
            "message": "Counted by the rules, but over a hard cap (C2) or a paused AI limit "
            "(Z9): recorded, never billed.",
        }
    return {
        "code": "not_billable",
        "message": "The rules bill no unit of it: `not_counted` names the rule that decided.",
    }


class EntitlementsApi(APIView):
    @extend_schema(operation_id="entitlements_retrieve", responses=EntitlementsOut)
    def get(self, request, slug: str):
        account, subscription = _account_and_subscription(request, slug)
        states = selectors.entitlements(account=account, subscription=subscription)
        body = {feature: state["state"] for feature, state in states.items()}
        body["details"] = states
        return Response(body)
