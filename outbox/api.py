"""Partner API: webhook endpoints and their delivery log (docs/api.md, "Webhooks")."""

import json

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_fields import NewestFirstPagination, TextField
from accounts.api_schema import paginated
from accounts.idempotency import idempotent

from . import delivery as sending
from . import selectors, services
from .endpoint_url import WebhookUrlField
from .models import DeliveryStatus, EventType


class EndpointIn(serializers.Serializer):
    url = WebhookUrlField(max_length=2000)
    description = TextField(max_length=200, required=False, default="")


class EndpointOut(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    url = serializers.URLField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()
    events = serializers.SerializerMethodField()

    def get_events(self, endpoint) -> list[str]:
        return list(EventType.values)


class EndpointCreatedOut(EndpointOut):
    secret = serializers.CharField(help_text="Signs every delivery. Shown only in this answer.")


class EventOut(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    type = serializers.ChoiceField(choices=EventType.choices)
    account = serializers.SerializerMethodField()
    sequence = serializers.IntegerField()
    created_at = serializers.DateTimeField()

    def get_account(self, event) -> str:
        return event.data.get("account", "")


class DeliveryOut(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    endpoint = serializers.CharField(source="endpoint.public_id")
    event = EventOut()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    replay_of = serializers.CharField(source="replay_of.public_id", allow_null=True)
    created_at = serializers.DateTimeField()


class DeliveryDetailOut(DeliveryOut):
    body = serializers.SerializerMethodField(help_text="The JSON body that is (was) sent.")

    def get_body(self, delivery) -> dict:
        return json.loads(sending.body_of(delivery))


class EndpointsApi(APIView):
    """GET: the partner's endpoints. POST: register one; the answer shows its secret once."""

    @extend_schema(
        operation_id="webhook_endpoints_list", responses=paginated(EndpointOut(), "EndpointPage")
    )
    def get(self, request):
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(
            selectors.endpoint_list(principal=request.user), request, view=self
        )
        return paginator.get_paginated_response(EndpointOut(page, many=True).data)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=EndpointIn,
        responses={201: EndpointCreatedOut},
    )
    @idempotent
    def post(self, request):
        selectors.endpoint_list(principal=request.user)  # partner keys only
        serializer = EndpointIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.endpoint_create(
            partner=request.user.key.partner, **serializer.validated_data
        )
        endpoint.secret = secret
        return Response(EndpointCreatedOut(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointApi(APIView):
    @extend_schema(operation_id="webhook_endpoints_retrieve", responses=EndpointOut)
    def get(self, request, endpoint_id: str):
        endpoint = selectors.endpoint_get(principal=request.user, endpoint_id=endpoint_id)
        return Response(EndpointOut(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_delete", responses={204: None})
    def delete(self, request, endpoint_id: str):
        endpoint = selectors.endpoint_get(principal=request.user, endpoint_id=endpoint_id)
        services.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveriesApi(APIView):
    @extend_schema(
        operation_id="webhook_deliveries_list",
        parameters=[
            OpenApiParameter("endpoint", str, description="Only this endpoint's (we_...)"),
            OpenApiParameter("status", str, enum=DeliveryStatus.values),
        ],
        responses=paginated(DeliveryOut(), "DeliveryPage"),
    )
    def get(self, request):
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in DeliveryStatus.values:
            raise serializers.ValidationError(
                {"status": [f"One of {', '.join(DeliveryStatus.values)}."]}
            )
        deliveries = selectors.delivery_list(
            principal=request.user,
            endpoint_id=request.query_params.get("endpoint"),
            status=wanted,
        )
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(DeliveryOut(page, many=True).data)


class DeliveryApi(APIView):
    @extend_schema(operation_id="webhook_deliveries_retrieve", responses=DeliveryDetailOut)
    def get(self, request, delivery_id: str):
        found = selectors.delivery_get(principal=request.user, delivery_id=delivery_id)
        return Response(DeliveryDetailOut(found).data)


class DeliveryReplayApi(APIView):
    """POST: send the delivery's event again now, as a new delivery in the log."""

    @extend_schema(
        operation_id="webhook_deliveries_replay", request=None, responses={201: DeliveryOut}
    )
    @idempotent
    def post(self, request, delivery_id: str):
        found = selectors.delivery_get(principal=request.user, delivery_id=delivery_id)
        replay = services.delivery_replay(delivery=found)
        replay = selectors.delivery_get(principal=request.user, delivery_id=replay.public_id)
        return Response(DeliveryOut(replay).data, status=status.HTTP_201_CREATED)
