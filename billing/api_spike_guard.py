"""Partner API: the spike guard's held units and settings (billing.spike_guard).

What is held (spikes and suspected loops), deciding on it (release: billed; exclude: never
billed), and the account's own thresholds.
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_fields import TextField, WholeNumberField
from accounts.idempotency import idempotent
from accounts.models import Account
from accounts.selectors import account_get
from metering import event_schema, validation
from metering.models import AnomalyStatus, SpikeGuardMode, UsageAnomaly, UsageHold

from . import selectors, spike_guard

_STATUSES = (
    "`open`: its excess is held for review; `alerted`: the account's settings say alert only, "
    "it was billed; `released`: billed after review; `excluded`: never billed."
)
_MODES = "; ".join(f"`{value}`: {label}" for value, label in SpikeGuardMode.choices)
# One request decides on at most this many tickets.
TICKETS_MOST = 1000


class AnomalyOut(serializers.Serializer):
    id = serializers.IntegerField()
    meter = serializers.CharField()
    day = serializers.DateField(help_text="The UTC day whose units were far above the usual.")
    observed = serializers.IntegerField(help_text="Billable units that day, when checked.")
    baseline = serializers.IntegerField(
        help_text="The usual: the median of the same weekdays (4 to 8 weeks)."
    )
    held = serializers.IntegerField(
        help_text="Units held now (the excess over the usual); 0 once decided."
    )
    status = serializers.ChoiceField(choices=AnomalyStatus.values, help_text=_STATUSES)
    message = serializers.CharField(help_text="What happened, in words (as the email says).")
    resolved_by = serializers.CharField(
        allow_null=True,
        help_text="Who decided (`automatically after 14 days` when nobody did); null while open.",
    )
    opened_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class LoopHeldOut(serializers.Serializer):
    reason = serializers.CharField(help_text="Why these tickets look like a loop, in words.")
    count = serializers.IntegerField(help_text="Tickets held for this reason.")
    tickets = serializers.ListField(
        child=serializers.CharField(),
        help_text=f"Their ids, the first {selectors.LOOP_TICKETS_LISTED} held.",
    )
    held_at = serializers.DateTimeField(help_text="When the first was held.")
    release_after = serializers.DateTimeField(
        help_text="When the first is released by itself (14 days after it was held) unless "
        "someone decides before."
    )


class HeldUsageOut(serializers.Serializer):
    anomalies = AnomalyOut(
        many=True,
        help_text="Usage spikes still open, and those opened or decided in the last 30 days; "
        "the latest day first.",
    )
    loops = LoopHeldOut(
        many=True, help_text="Tickets held now as a suspected loop, by reason; oldest first."
    )


@extend_schema_field(event_schema.identifier_string())
class TicketIdField(serializers.CharField):
    """A ticket id as the events name it: 1 to 255 characters, no control character."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        ticket, error = validation.identifier("ticket", data)
        if error:
            raise serializers.ValidationError(error.message)
        return ticket


class HeldTicketsIn(serializers.Serializer):
    tickets = serializers.ListField(
        child=TicketIdField(),
        min_length=1,
        max_length=TICKETS_MOST,
        help_text="Helpdesk ticket ids; those not held as a suspected loop are listed back in "
        "`not_held`.",
    )


class HeldTicketsExcludeIn(HeldTicketsIn):
    comment = TextField(
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why, in the merchant's words (kept on each ticket's dispute); the hold's "
        "reason when empty.",
    )


class HeldTicketsOut(serializers.Serializer):
    tickets = serializers.ListField(
        child=serializers.CharField(), help_text="The tickets whose holds this request ended."
    )
    not_held = serializers.ListField(
        child=serializers.CharField(),
        help_text="Tickets asked for with no active loop hold (never held, or decided already).",
    )


class SpikeGuardOut(serializers.Serializer):
    mode = serializers.ChoiceField(choices=SpikeGuardMode.values, help_text=_MODES)
    loop_tickets = serializers.IntegerField(
        help_text="A requester (or a subject) opening more tickets than this..."
    )
    loop_minutes = serializers.IntegerField(help_text="...within this many minutes is a loop.")
    anomaly_multiplier = serializers.IntegerField(
        help_text="A day above this many times its usual volume (k)..."
    )
    anomaly_margin = serializers.IntegerField(
        help_text="...and this many units above it (c) is an anomaly."
    )


def _bounded(name: str, words: str) -> WholeNumberField:
    low, high = spike_guard.SETTING_BOUNDS[name]
    return WholeNumberField(
        required=False, min_value=low, max_value=high, help_text=f"{words} ({low:,} to {high:,})."
    )


class SpikeGuardIn(serializers.Serializer):
    """The settings to change; a field left out keeps its value."""

    mode = serializers.ChoiceField(choices=SpikeGuardMode.values, required=False, help_text=_MODES)
    loop_tickets = _bounded(
        "loop_tickets", "More tickets than this from one requester or on one subject"
    )
    loop_minutes = _bounded("loop_minutes", "Within this many minutes")
    anomaly_multiplier = _bounded("anomaly_multiplier", "Times the usual volume")
    anomaly_margin = _bounded("anomaly_margin", "Units above the usual")


def anomaly_out(anomaly: UsageAnomaly) -> dict:
    return {
        "id": anomaly.pk,
        "meter": anomaly.meter,
        "day": anomaly.day,
        "observed": anomaly.observed,
        "baseline": anomaly.baseline,
        "held": anomaly.held,
        "status": anomaly.status,
        "message": spike_guard.anomaly_words(anomaly),
        "resolved_by": anomaly.resolved_by or None,
        "opened_at": anomaly.opened_at,
        "resolved_at": anomaly.resolved_at,
    }


def settings_out(account: Account) -> dict:
    rule = spike_guard.spike_guard_settings(account=account)
    return {name: getattr(rule, name) for name in spike_guard.SETTING_FIELDS}


class HeldUsageApi(APIView):
    @extend_schema(
        operation_id="held_usage_retrieve",
        responses=HeldUsageOut,
        description="What the spike guard holds out of billing for review: usage spikes "
        "(a day's units far above the same weekdays', its excess held) and tickets of "
        "suspected loops (a burst from one requester or on one subject, or automated mail "
        "answered only by a rule). Held units are not billed until released; they are "
        "released by themselves after 14 days.",
    )
    def get(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        now = timezone.now()
        return Response(
            {
                "anomalies": [
                    anomaly_out(a) for a in selectors.anomalies_recent(account=account, now=now)
                ],
                "loops": [
                    {
                        "reason": group.reason,
                        "count": group.count,
                        "tickets": group.tickets,
                        "held_at": group.held_at,
                        "release_after": group.release_after,
                    }
                    for group in selectors.loops_held(account=account)
                ],
            }
        )


def _anomaly_decided(request, slug: str, anomaly_id: int, decide) -> Response:
    account = account_get(principal=request.user, slug=slug)
    anomaly = selectors.anomaly_get(account=account, anomaly_id=anomaly_id)
    return Response(anomaly_out(decide(anomaly=anomaly)))


class AnomalyReleaseApi(APIView):
    @extend_schema(
        operation_id="anomalies_release",
        request=None,
        responses=AnomalyOut,
        description="Release a spike's held units: they are billed (in their period while it "
        "is open, else as late usage on the next invoice, saying so). 409 `decided` when it "
        "was released, excluded or alert only already.",
    )
    @idempotent
    def post(self, request, slug: str, anomaly_id: int):
        return _anomaly_decided(request, slug, anomaly_id, spike_guard.anomaly_release)


class AnomalyExcludeApi(APIView):
    @extend_schema(
        operation_id="anomalies_exclude",
        request=None,
        responses=AnomalyOut,
        description="Exclude a spike's held units for good: never billed (each held ticket "
        "becomes an accepted ticket dispute). 409 `decided` when it was released, excluded or "
        "alert only already.",
    )
    @idempotent
    def post(self, request, slug: str, anomaly_id: int):
        return _anomaly_decided(request, slug, anomaly_id, spike_guard.anomaly_exclude)


def _tickets_decided(decided: list[UsageHold], asked: list[str]) -> dict:
    ended = {h.subject for h in decided}
    return {
        "tickets": sorted(ended),
        "not_held": sorted(set(asked) - ended),
    }


class HeldUsageReleaseApi(APIView):
    @extend_schema(
        operation_id="held_usage_release",
        request=HeldTicketsIn,
        responses=HeldTicketsOut,
        description="Release tickets held as a suspected loop: they are billed (in their "
        "period while it is open, else as late usage on the next invoice). 404 `not_held` "
        "when none of them is held.",
        examples=[
            OpenApiExample("Two tickets", request_only=True, value={"tickets": ["48213", "48214"]})
        ],
    )
    @idempotent
    def post(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        data = _valid(HeldTicketsIn, request)
        holds = selectors.loop_holds_of_tickets(account=account, tickets=data["tickets"])
        released = spike_guard.holds_release(holds=holds)
        return Response(_tickets_decided(released, data["tickets"]))


class HeldUsageExcludeApi(APIView):
    @extend_schema(
        operation_id="held_usage_exclude",
        request=HeldTicketsExcludeIn,
        responses=HeldTicketsOut,
        description="Exclude tickets held as a suspected loop: never billed (each becomes an "
        "accepted ticket dispute, reason `auto_reply_loop`). 404 `not_held` when none of them "
        "is held.",
    )
    @idempotent
    def post(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        data = _valid(HeldTicketsExcludeIn, request)
        holds = selectors.loop_holds_of_tickets(account=account, tickets=data["tickets"])
        excluded = spike_guard.holds_exclude(holds=holds, comment=data["comment"])
        return Response(_tickets_decided(excluded, data["tickets"]))


class SpikeGuardApi(APIView):
    @extend_schema(operation_id="spike_guard_retrieve", responses=SpikeGuardOut)
    def get(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        return Response(settings_out(account))

    @extend_schema(
        operation_id="spike_guard_update",
        request=SpikeGuardIn,
        responses=SpikeGuardOut,
        description="Change some of the spike guard's settings (the others keep their value). "
        "They apply to what is checked from now on, never to units held already.",
        examples=[
            OpenApiExample(
                "Alert only, a wider loop window",
                request_only=True,
                value={"mode": "alert_only", "loop_tickets": 25, "loop_minutes": 30},
            )
        ],
    )
    def patch(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        data = _valid(SpikeGuardIn, request)
        spike_guard.spike_guard_settings_save(account=account, **data)
        return Response(settings_out(account))


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
