"""Read paths of partner webhooks, scoped to the asking partner key."""

from django.db.models import QuerySet

from accounts.errors import Forbidden, NotFound
from accounts.principals import KeyPrincipal

from .models import Delivery, Endpoint


def _partner_id(principal) -> int:
    """Webhooks belong to a partner: an account key does not manage them."""
    if not isinstance(principal, KeyPrincipal) or principal.key.account_id is not None:
        raise Forbidden("Only a partner key manages webhook endpoints and reads their log.")
    partner_id = principal.key.partner_id
    assert partner_id is not None  # ApiKey's constraint: a key without an account has a partner
    return partner_id


def endpoint_list(*, principal) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(partner_id=_partner_id(principal), deleted_at__isnull=True)


def endpoint_get(*, principal, endpoint_id: str) -> Endpoint:
    endpoint = endpoint_list(principal=principal).filter(public_id=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"No webhook endpoint '{endpoint_id}'.")
    return endpoint


def delivery_list(
    *, principal, endpoint_id: str | None = None, status: str | None = None
) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.filter(endpoint__partner_id=_partner_id(principal))
    if endpoint_id:
        deliveries = deliveries.filter(endpoint__public_id=endpoint_id)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.select_related("event", "endpoint", "replay_of")


def delivery_get(*, principal, delivery_id: str) -> Delivery:
    delivery = delivery_list(principal=principal).filter(public_id=delivery_id).first()
    if delivery is None:
        raise NotFound(f"No webhook delivery '{delivery_id}'.")
    return delivery
