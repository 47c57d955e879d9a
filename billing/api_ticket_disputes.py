"""Partner API: merchants' disputes of billed tickets (billing.ticket_disputes)."""

from django.db.models import QuerySet
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_fields import NewestFirstPagination, TextField, money
from accounts.api_schema import MoneyOut, paginated
from accounts.errors import DomainError, NotFound
from accounts.idempotency import idempotent
from accounts.models import Account
from accounts.selectors import account_get
from metering import event_schema, validation

from . import ticket_disputes
from .models import TicketDispute, TicketDisputeOutcome, TicketDisputeReason, TicketDisputeStatus

_REASONS = "; ".join(f"`{value}`: {label}" for value, label in TicketDisputeReason.choices)
_OUTCOMES = "; ".join(
    f"`{value}`: {label}" for value, label in TicketDisputeOutcome.choices if value
)


class TicketDisputeIn(serializers.Serializer):
    ticket = TextField(max_length=255, help_text="The helpdesk's ticket id, as its events name it.")
    reason = serializers.ChoiceField(choices=TicketDisputeReason.choices, help_text=_REASONS)
    comment = TextField(
        max_length=ticket_disputes.COMMENT_MOST,
        required=False,
        allow_blank=True,
        default="",
        help_text="In the merchant's words; required when the reason is `other`.",
    )


class TicketDisputesBulkIn(serializers.Serializer):
    requester = TextField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="Every billed ticket of this requester (the events' `customer`).",
    )
    # `from`/`to` are Python keywords: declared below under their wire names.
    reason = serializers.ChoiceField(choices=TicketDisputeReason.choices, help_text=_REASONS)
    comment = TextField(
        max_length=ticket_disputes.COMMENT_MOST, required=False, allow_blank=True, default=""
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(
            required=False, help_text="Tickets billable from this instant (with `to`)."
        )
        fields["to"] = serializers.DateTimeField(
            required=False, help_text="… up to this instant, excluded."
        )
        return fields


class TicketDisputesBulkChoice(OpenApiSerializerExtension):
    """A bulk dispute names a requester, or a whole time range (as the view requires)."""

    target_class = TicketDisputesBulkIn

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["anyOf"] = [
                {"required": ["requester"], "properties": {"requester": {"minLength": 1}}},
                {"required": ["from", "to"]},
            ]
        return schema


class TicketDisputeOut(serializers.Serializer):
    id = serializers.IntegerField()
    ticket = serializers.CharField()
    reason = serializers.ChoiceField(choices=TicketDisputeReason.choices, help_text=_REASONS)
    comment = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(
        choices=TicketDisputeStatus.values,
        help_text="`open`: waiting for an operator; `accepted`: the ticket is not billed; "
        "`rejected`: it stays billed (`decision` says why).",
    )
    outcome = serializers.ChoiceField(
        choices=[v for v in TicketDisputeOutcome.values if v],
        allow_null=True,
        help_text=f"What an accepted dispute did to the money: {_OUTCOMES}.",
    )
    decision = serializers.CharField(allow_blank=True, help_text="Shown to the merchant as is.")
    decided_by = serializers.CharField(
        allow_blank=True, help_text="`automatically` when the helpdesk's events proved it."
    )
    credited = MoneyOut(help_text="Given back before tax (0 unless `outcome` is `credited`).")
    credit_note = serializers.CharField(allow_null=True, help_text="Its number, when credited.")
    filed_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class TicketDisputesBulkOut(serializers.Serializer):
    opened = TicketDisputeOut(many=True)
    skipped = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text="Tickets that could not be contested, each with `ticket` and `message`.",
    )


def dispute_out(dispute: TicketDispute, account: Account) -> dict:
    note = dispute.credit_note
    return {
        "id": dispute.pk,
        "ticket": dispute.ticket,
        "reason": dispute.reason,
        "comment": dispute.comment,
        "status": dispute.status,
        "outcome": dispute.outcome or None,
        "decision": dispute.decision,
        "decided_by": dispute.decided_by,
        "credited": money(dispute.credited_minor, account.currency),
        "credit_note": note.number if note else None,
        "filed_by": dispute.filed_by,
        "created_at": dispute.created_at,
        "resolved_at": dispute.resolved_at,
    }


def _disputes(account: Account) -> QuerySet[TicketDispute]:
    return TicketDispute.objects.filter(account=account).select_related("credit_note")


class TicketDisputesApi(APIView):
    """The account's ticket disputes (GET, newest first) and contesting one ticket (POST)."""

    @extend_schema(
        operation_id="ticket_disputes_list",
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=TicketDisputeStatus.values,
                description="Only disputes in this status.",
            ),
            OpenApiParameter("ticket", event_schema.identifier_string(), description="One ticket."),
        ],
        responses=paginated(TicketDisputeOut(), "TicketDisputePage"),
    )
    def get(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        rows = _disputes(account)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in TicketDisputeStatus.values:
                raise DomainError(
                    f"`status` is one of {', '.join(TicketDisputeStatus.values)}.",
                    details={"field": "status"},
                )
            rows = rows.filter(status=wanted)
        if "ticket" in request.query_params:
            ticket = request.query_params["ticket"]
            _, error = validation.identifier("ticket", ticket)
            if error:  # empty, too long, or a character the database cannot compare
                raise DomainError(error.message, details={"field": "ticket"})
            rows = rows.filter(ticket=ticket)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        assert page is not None  # None only for a paginator without a page size
        return paginator.get_paginated_response([dispute_out(d, account) for d in page])

    @extend_schema(
        operation_id="ticket_disputes_create",
        request=TicketDisputeIn,
        responses={201: TicketDisputeOut},
        description="Contest one billed ticket, within its open period or 30 days after its "
        "invoice; one open dispute per ticket. Accepted at once when the helpdesk's events "
        "prove it (merged into another ticket: `duplicate`; flagged as spam: `spam`), "
        "otherwise `open` until an operator decides. 404 `not_billed`; 409 `already_open`, "
        "`already_excluded`, `too_late`.",
        examples=[
            OpenApiExample(
                "A test ticket",
                request_only=True,
                value={"ticket": "48213", "reason": "test", "comment": "Our QA's ticket"},
            )
        ],
    )
    @idempotent
    def post(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        data = _valid(TicketDisputeIn, request)
        dispute = ticket_disputes.ticket_dispute_open(
            account=account, ticket=data["ticket"], reason=data["reason"], comment=data["comment"]
        )
        return Response(dispute_out(dispute, account), status=status.HTTP_201_CREATED)


class TicketDisputesBulkApi(APIView):
    @extend_schema(
        operation_id="ticket_disputes_bulk_create",
        request=TicketDisputesBulkIn,
        responses={200: TicketDisputesBulkOut},
        description="Contest every billed ticket of one `requester` and/or billable within "
        f"[`from`, `to`): a mail loop, a spam wave (at most {ticket_disputes.BULK_MOST:,} "
        "tickets). Each is filed as if alone; those that cannot be are listed in `skipped`.",
        examples=[
            OpenApiExample(
                "An auto-responder loop",
                request_only=True,
                value={
                    "requester": "noreply@vendor.example",
                    "reason": "auto_reply_loop",
                    "comment": "Their auto-responder answered ours all night",
                },
            )
        ],
    )
    @idempotent
    def post(self, request, slug: str):
        account = account_get(principal=request.user, slug=slug)
        data = _valid(TicketDisputesBulkIn, request)
        if bool(data.get("from")) != bool(data.get("to")):
            raise DomainError("Give both `from` and `to`, or neither.", details={"field": "to"})
        result = ticket_disputes.ticket_disputes_open_bulk(
            account=account,
            reason=data["reason"],
            comment=data["comment"],
            requester=data["requester"],
            start=data.get("from"),
            end=data.get("to"),
        )
        return Response(
            {
                "opened": [dispute_out(d, account) for d in result.opened],
                "skipped": [{"ticket": t, "message": why} for t, why in result.skipped],
            }
        )


class TicketDisputeApi(APIView):
    @extend_schema(operation_id="ticket_disputes_retrieve", responses=TicketDisputeOut)
    def get(self, request, slug: str, dispute_id: int):
        account = account_get(principal=request.user, slug=slug)
        dispute = _disputes(account).filter(pk=dispute_id).first()
        if dispute is None:
            raise NotFound(f"No ticket dispute {dispute_id} on this account.")
        return Response(dispute_out(dispute, account))


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
